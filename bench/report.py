"""Human summary tables, JSON result files and markdown tables."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.procmon import machine_info

RESULT_FORMAT = "mcp-bench/1"


def fmt(value: Any, digits: int = 1) -> str:
    """Compact number formatting for tables; '-' for missing/NaN."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return None
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """NaN/inf -> None so the file is strict JSON."""
    if isinstance(obj, float):
        return None if (math.isnan(obj) or math.isinf(obj)) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def results_document(runs: list[dict[str, Any]], argv: list[str] | None = None) -> dict[str, Any]:
    return {
        "format": RESULT_FORMAT,
        "machine": machine_info(),
        "argv": list(sys.argv if argv is None else argv),
        "runs": runs,
    }


def write_json(path: str | Path, runs: list[dict[str, Any]], argv: list[str] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = _clean(results_document(runs, argv))
    path.write_text(json.dumps(doc, indent=1, default=_json_default, allow_nan=False) + "\n")
    return path


def read_json(path: str | Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or doc.get("format") != RESULT_FORMAT:
        raise ValueError(f"{path}: not a bench results file")
    return doc


def _cpu(block: dict[str, Any] | None) -> str:
    if not block:
        return "-"
    labels = block.get("cpu_pct_by_label", {})
    parts = [f"{block.get('cpu_pct', 0):.0f}%"]
    if len(labels) > 1:
        parts.append("(" + ", ".join(f"{k} {v:.0f}%" for k, v in labels.items()) + ")")
    per_proc = block.get("procs_cpu_pct") or []
    if len(per_proc) > 1:
        parts.append("(" + " + ".join(f"{v:.0f}%" for v in per_proc) + ")")
    return " ".join(parts)


def _lat(lat: dict[str, Any] | None) -> str:
    if not lat or not lat.get("count"):
        return "-"
    return " / ".join(fmt(lat.get(k), 2) for k in ("p50", "p90", "p99", "p99.9", "max"))


def _lat4(lat: dict[str, Any] | None) -> str:
    if not lat or not lat.get("count"):
        return "-"
    return " / ".join(fmt(lat.get(k), 2) for k in ("p50", "p90", "p99", "max"))


#: The one line that explains ``rate_limited`` (the server's per-connection limit).
RATE_LIMIT_HINT = (
    "hint: the server rate-limited the load (rate_limited): run it with `--rate-limit 0` "
    "for load tests (mcp-tornado's default is 50 msg/s per connection)"
)


def rate_limited(runs: Iterable[dict[str, Any]]) -> bool:
    """Whether any run saw the server's ``rate_limited`` answer (or its close 4429)."""
    for run in runs:
        m = run.get("metrics", {})
        for key in (*m.get("errors", {}), *m.get("setup_errors", {})):
            if "rate_limited" in key or key.endswith(":4429"):
                return True
    return False


def problems(run: dict[str, Any]) -> list[str]:
    """What went wrong in a run (empty: a clean run); any of it makes the CLI exit 1."""
    m = run.get("metrics", {})
    out = [f"bench failure: {f.strip().splitlines()[-1]}" for f in run.get("failures", [])]
    errors = {**m.get("setup_errors", {})}
    for key, value in m.get("errors", {}).items():
        errors[key] = errors.get(key, 0) + value
    if errors:
        out.append("errors: " + ", ".join(f"{k}={v}" for k, v in sorted(errors.items())))
    for key in ("lost", "reordered", "duplicates", "unfinished_pairs"):
        if m.get(key):
            out.append(f"{key.replace('_', ' ')}: {m[key]}")
    params = run.get("params", {})
    sc = run.get("scenario")
    if sc in ("relay", "openloop") and m.get("ready_pairs", 0) < params.get("pairs", 0):
        out.append(f"ready pairs: {m.get('ready_pairs', 0)} of {params.get('pairs')}")
    if sc == "churn":
        for key in ("room_full_first_join", "room_full_on_rejoin", "handshake_timeouts"):
            if m.get(key):
                out.append(f"{key.replace('_', ' ')}: {m[key]}")
        if not m.get("cycles"):
            out.append("no churn cycle completed")
    if sc == "connect" and m.get("joined", 0) < params.get("peers", 0):
        out.append(f"joined: {m.get('joined', 0)} of {params.get('peers')}")
    if sc == "idle":
        if m.get("held", 0) < params.get("peers", 0):
            out.append(f"held: {m.get('held', 0)} of {params.get('peers')}")
        if m.get("still_open", 0) < m.get("held", 0):
            out.append(f"closed during the hold: {m.get('held', 0) - m.get('still_open', 0)}")
    counts = run.get("server_counts") or {}
    out += [f"the server's counts disagree: {line}" for line in counts.get("disagree", [])]
    if sc == "calls" and m.get("failed"):
        kinds = ", ".join(f"{k}={v}" for k, v in (m.get("failures") or {}).items())
        out.append(f"failed calls: {m['failed']} of {m.get('calls')} ({kinds})")
    return out


def summary_rows(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows describing one run, for the terminal."""
    m = run.get("metrics", {})
    sc = run.get("scenario")
    rows: list[tuple[str, str]] = [
        ("scenario", f"{sc}  [{run.get('label')}]  {run.get('url')}"),
        ("params", ", ".join(f"{k}={v}" for k, v in run.get("params", {}).items())),
    ]
    if sc in ("relay", "openloop"):
        rows += [
            ("ready pairs", fmt(m.get("ready_pairs"))),
            ("deliveries/s (one-way)", fmt(m.get("deliveries_per_s"))),
            ("round trips/s", fmt(m.get("round_trips_per_s"))),
            ("RTT ms p50/p90/p99/p99.9/max", _lat(m.get("latency_ms"))),
            (
                "lost / reordered / dup",
                f"{m.get('lost')} / {m.get('reordered')} / {m.get('duplicates')}",
            ),
        ]
        if sc == "openloop":
            for step in m.get("sweep", []):
                rows.append(
                    (
                        f"  offered {fmt(step['offered_msgs_per_s'])} msg/s",
                        f"p99 {fmt(step['p99_ms'], 2)} ms",
                    )
                )
            rows.append(("p99 crosses 50 ms at", fmt(m.get("p99_crosses_50ms_at_msgs_per_s"))))
    elif sc == "churn":
        rows += [
            ("cycles (join+exchange+leave)", fmt(m.get("cycles"))),
            ("cycles/s", fmt(m.get("cycles_per_s"))),
            (
                "room_full first join / rejoin",
                f"{m.get('room_full_first_join')} / {m.get('room_full_on_rejoin')}",
            ),
            ("handshake timeouts", fmt(m.get("handshake_timeouts"))),
            ("cycle ms p50/p90/p99/p99.9/max", _lat(m.get("cycle_ms"))),
        ]
    elif sc == "calls":
        failures = m.get("failures") or {}
        rows += [
            (
                "calls set up / started",
                f"{fmt(m.get('set_up'))} / {fmt(m.get('calls'))}"
                f" (offered {fmt(m.get('offered_calls_per_s'))}/s)",
            ),
            ("calls/s achieved", fmt(m.get("calls_per_s"))),
            ("set-up ms p50/p90/p99/max", _lat4(m.get("setup_ms"))),
            (
                "failed calls by kind",
                ", ".join(f"{k}={v}" for k, v in failures.items()) or "none",
            ),
        ]
    elif sc == "calls_sweep":
        for line in m.get("sweep", []):
            rows.append(
                (
                    f"  offered {fmt(line['offered_calls_per_s'])} calls/s",
                    f"set up {fmt(line['calls_per_s'])}/s, p50/p90/p99 "
                    f"{fmt(line['p50_ms'], 1)}/{fmt(line['p90_ms'], 1)}/{fmt(line['p99_ms'], 1)} ms"
                    + (f"; stop: {line['stop']}" if line.get("stop") else ""),
                )
            )
        from bench.callsweep import capacity_text  # (it runs drivers: imported on use)

        rows.append(
            (
                f"call set-ups/s (p99 <= {fmt(m.get('p99_limit_ms'), 0)} ms, 0 failed)",
                capacity_text(run),
            )
        )
    elif sc == "connect":
        rows += [
            ("joined", fmt(m.get("joined"))),
            ("joins/s", fmt(m.get("joins_per_s"))),
            ("time to all joined s", fmt(m.get("time_to_all_joined_s"), 2)),
            ("connect ms p50/p90/p99/p99.9/max", _lat(m.get("connect_ms"))),
        ]
    elif sc == "idle":
        rows += [
            ("held / still open", f"{fmt(m.get('held'))} / {fmt(m.get('still_open'))}"),
            ("pings / pongs", f"{fmt(m.get('pings'))} / {fmt(m.get('pongs'))}"),
            ("server KiB per peer", fmt(m.get("server_kib_per_peer"), 2)),
            ("client KiB per peer", fmt(m.get("client_kib_per_peer"), 2)),
        ]
    errors = {**m.get("setup_errors", {}), **m.get("errors", {})}
    rows.append(("errors", ", ".join(f"{k}={v}" for k, v in errors.items()) or "none"))
    rows.append(("server CPU (of one core)", _cpu(run.get("server"))))
    server = run.get("server") or {}
    if server.get("rss_mib") is not None:
        rows.append(("server RSS MiB", fmt(server.get("rss_mib"))))
    rows.append(("client CPU (of one core)", _cpu(run.get("client"))))
    counts = run.get("server_counts")
    if counts:
        server_c, client_c = counts["server"], counts["client"]
        rows.append((
            "server's counts (relayed, joins)",
            f"{server_c['messages_relayed']}, {server_c['joins']} (client: sent "
            f"{client_c['messages_relayed']}, joined {client_c['joins']}): "
            + ("DISAGREE" if counts["disagree"] else "agree"),
        ))  # fmt: skip
    for failure in run.get("failures", []):
        rows.append(("FAILURE", failure.strip().splitlines()[-1]))
    return rows


def print_summary(runs: Iterable[dict[str, Any]], stream: Any = None) -> None:
    stream = sys.stdout if stream is None else stream
    for run in runs:
        rows = summary_rows(run)
        width = max(len(name) for name, _ in rows)
        print("-" * 78, file=stream)
        for name, value in rows:
            print(f"{name:<{width}}  {value}", file=stream)
    print("-" * 78, file=stream)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_markdown(info: dict[str, Any] | None = None) -> str:
    info = machine_info() if info is None else info
    return (
        f"Machine: {info.get('cpu_model')}, {info.get('cores')} cores, "
        f"{info.get('ram_gib')} GiB RAM, Python {info.get('python')} "
        f"({info.get('platform')}); 1-minute load average {info.get('loadavg_1m_at_start')} "
        "at the start. Server and load client share the machine."
    )
