"""Main-process side of each scenario: run the workers, turn their raw data into a result.

Every function returns one JSON-ready *run* dict::

    {"scenario": ..., "label": ..., "url": ..., "params": {...},
     "metrics": {...}, "server": {...} | None, "client": {...}, "cdf": [[ms, frac], ...]}
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.procmon import ProcTree, TreeSnapshot, cpu_between
from bench.progress import Progress
from bench.runner import RunOutput, run_workers
from bench.stats import cdf_points, crossing_point, merge_counts, summarize


@dataclass
class Target:
    """A server under test: where to connect, what to call it, which pid to sample."""

    url: str
    label: str
    server_pid: int | None = None

    def tree(self) -> ProcTree | None:
        return ProcTree(self.server_pid) if self.server_pid else None


def _ns_values(payloads: list[dict[str, Any]], key: str) -> list[float]:
    """Concatenate the int64 ns arrays of every worker, as milliseconds."""
    values: list[float] = []
    for payload in payloads:
        arr = array("q")
        arr.frombytes(payload.get(key, b""))
        values.extend(v / 1e6 for v in arr)
    return values


def _counter_sum(payloads: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for payload in payloads:
        merge_counts(out, payload.get(key, {}))
    return dict(sorted(out.items()))


def _span_s(payloads: list[dict[str, Any]], end_key: str = "end_ns") -> float:
    if not payloads:
        return 0.0
    start = int(min(p["start_ns"] for p in payloads))
    end = int(max(p[end_key] for p in payloads))
    return max(1e-9, (end - start) / 1e9)


def _phase(out: RunOutput, a: int, b: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Server and client CPU/RSS between barriers a and b."""
    server = None
    sa, sb = _snap(out.server_snaps, a), _snap(out.server_snaps, b)
    if sa is not None and sb is not None:
        server = cpu_between(sa, sb)
    client = None
    if len(out.client_snaps) > b:
        client = cpu_between(out.client_snaps[a], out.client_snaps[b])
        # one entry per client process, instead of labels that mean nothing here
        client.pop("cpu_pct_by_label", None)
        client["procs_cpu_pct"] = [row["cpu_pct"] for row in client.pop("procs", [])]
    return server, client


def _snap(snaps: list[TreeSnapshot | None], k: int) -> TreeSnapshot | None:
    return snaps[k] if 0 <= k < len(snaps) else None


def _base(scenario: str, target: Target, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "label": target.label,
        "url": target.url,
        "params": params,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _setup_errors(out: RunOutput) -> dict[str, int]:
    infos = out.barrier_infos[0] if out.barrier_infos else []
    return _counter_sum(infos, "errors")


def _latency_block(payloads: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Any]]:
    rtts = _ns_values(payloads, "rtt_ns")
    return summarize(rtts), [list(p) for p in cdf_points(rtts)]


def _relay_metrics(payloads: list[dict[str, Any]], span: float) -> dict[str, Any]:
    latency, _ = _latency_block(payloads)
    loss = _counter_sum(payloads, "loss")
    deliveries = sum(p["deliveries"] for p in payloads)
    return {
        "ready_pairs": sum(p.get("ready_pairs", 0) for p in payloads),
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / span,
        "round_trips_per_s": latency["count"] / span,
        "measure_s": span,
        "latency_ms": latency,
        "sent": loss.get("sent", 0),
        "echoed": loss.get("echoed", 0),
        "lost": loss.get("lost_a_to_b", 0) + loss.get("lost_echo", 0),
        "reordered": loss.get("reordered", 0),
        "duplicates": loss.get("duplicates", 0),
        "unfinished_pairs": sum(p.get("unfinished_pairs", 0) for p in payloads),
        "errors": _counter_sum(payloads, "errors"),
        "events": _counter_sum(payloads, "events"),
    }


def run_relay(
    target: Target,
    pairs: int,
    procs: int,
    window: int,
    messages: int,
    duration: float,
    concurrency: int = 200,
    setup_timeout: float = 30.0,
    drain_timeout: float = 5.0,
    progress: bool = True,
    timeout: float = 600.0,
) -> dict[str, Any]:
    params = {
        "pairs": pairs,
        "peers": 2 * pairs,
        "procs": procs,
        "window": window,
        "messages": messages,
        "duration": duration,
        "concurrency": concurrency,
        "setup_timeout": setup_timeout,
        "drain_timeout": drain_timeout,
    }
    bar = Progress(f"relay[{target.label}]", duration=duration, enabled=progress)
    out = run_workers(
        "relay",
        target.url,
        pairs,
        procs,
        params,
        n_barriers=2,
        n_steps=1,
        server=target.tree(),
        timeout=timeout,
        progress=bar,
        phase_names=["measure", "closing"],
    )
    payloads = out.results[0]
    run = _base("relay", target, params)
    metrics = _relay_metrics(payloads, _span_s(payloads))
    metrics["setup_errors"] = _setup_errors(out)
    run["metrics"] = metrics
    _, run["cdf"] = _latency_block(payloads)
    run["server"], run["client"] = _phase(out, 0, 1)
    run["failures"] = out.errors
    run["wall_s"] = out.wall_s
    return run


def run_openloop(
    target: Target,
    pairs: int,
    procs: int,
    rates: list[float],
    duration: float,
    stop_p99_ms: float | None = 50.0,
    concurrency: int = 200,
    setup_timeout: float = 30.0,
    drain_timeout: float = 5.0,
    progress: bool = True,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """One run per rate (msg/s per pair) on one set of connections; a sweep when several."""
    params = {
        "pairs": pairs,
        "peers": 2 * pairs,
        "procs": procs,
        "rates": rates,
        "duration": duration,
        "stop_p99_ms": stop_p99_ms,
        "concurrency": concurrency,
        "setup_timeout": setup_timeout,
        "drain_timeout": drain_timeout,
    }
    bar = Progress(f"openloop[{target.label}]", duration=duration, enabled=progress)

    def on_barrier(k: int, out: RunOutput) -> bool:
        # Every worker sends step k-1's result before arriving at barrier k.
        if k == 0 or stop_p99_ms is None or k > len(rates):
            return False
        payloads = out.results[k - 1]
        if not payloads:
            return False
        p99 = float(summarize(_ns_values(payloads, "rtt_ns"))["p99"])
        # Stop the sweep once p99 is well past the limit: the next rate only hurts more.
        return p99 == p99 and p99 > stop_p99_ms * 2

    out = run_workers(
        "openloop",
        target.url,
        pairs,
        procs,
        params,
        n_barriers=len(rates) + 1,
        n_steps=len(rates),
        server=target.tree(),
        timeout=timeout,
        progress=bar,
        on_barrier=on_barrier,
        phase_names=[f"{r:g}/s" for r in rates] + ["closing"],
    )
    run = _base("openloop", target, params)
    steps: list[dict[str, Any]] = []
    for k, rate in enumerate(rates):
        payloads = out.results[k]
        if not payloads:
            continue
        metrics = _relay_metrics(payloads, _span_s(payloads))
        metrics["rate_per_pair"] = rate
        metrics["offered_msgs_per_s"] = rate * pairs
        server, client = _phase(out, k, k + 1)
        _, cdf = _latency_block(payloads)
        steps.append({"metrics": metrics, "server": server, "client": client, "cdf": cdf})
    run["steps"] = steps
    offered = [s["metrics"]["offered_msgs_per_s"] for s in steps]
    p99s = [s["metrics"]["latency_ms"]["p99"] for s in steps]
    empty: dict[str, Any] = {"metrics": {}, "server": None, "client": None, "cdf": []}
    first = steps[0] if steps else empty
    run["metrics"] = dict(first["metrics"])
    run["metrics"]["setup_errors"] = _setup_errors(out)
    run["metrics"]["sweep"] = [
        {"offered_msgs_per_s": o, "p99_ms": p} for o, p in zip(offered, p99s, strict=True)
    ]
    run["metrics"]["p99_crosses_50ms_at_msgs_per_s"] = crossing_point(offered, p99s, 50.0)
    run["server"], run["client"], run["cdf"] = first["server"], first["client"], first["cdf"]
    run["failures"] = out.errors
    run["wall_s"] = out.wall_s
    return run


def run_churn(
    target: Target,
    pairs: int,
    procs: int,
    duration: float,
    rejoin_delay: float = 0.0,
    setup_timeout: float = 10.0,
    progress: bool = True,
    timeout: float = 600.0,
) -> dict[str, Any]:
    params = {
        "pairs": pairs,
        "peers": 2 * pairs,
        "procs": procs,
        "duration": duration,
        "rejoin_delay": rejoin_delay,
        "setup_timeout": setup_timeout,
    }
    bar = Progress(f"churn[{target.label}]", duration=duration, enabled=progress)
    out = run_workers(
        "churn",
        target.url,
        pairs,
        procs,
        params,
        n_barriers=2,
        n_steps=1,
        server=target.tree(),
        timeout=timeout,
        progress=bar,
        phase_names=["churn", "done"],
    )
    payloads = out.results[0]
    span = _span_s(payloads)
    counts = _counter_sum(payloads, "counts")
    cycle = summarize(_ns_values(payloads, "cycle_ns"))
    run = _base("churn", target, params)
    run["metrics"] = {
        "cycles": counts.get("cycles", 0),
        "cycles_per_s": counts.get("cycles", 0) / span,
        "joins_per_s": 2 * counts.get("cycles", 0) / span,
        "room_full_first_join": counts.get("room_full_first_join", 0),
        "room_full_on_rejoin": counts.get("room_full_on_rejoin", 0),
        "handshake_timeouts": counts.get("handshake_timeout", 0),
        "cycle_ms": cycle,
        "errors": _counter_sum(payloads, "errors"),
        "events": _counter_sum(payloads, "events"),
    }
    run["server"], run["client"] = _phase(out, 0, 1)
    run["failures"] = out.errors
    run["wall_s"] = out.wall_s
    return run


def run_connect(
    target: Target,
    peers: int,
    procs: int,
    concurrency: int = 64,
    wait_joined: float = 0.0,
    setup_timeout: float = 30.0,
    progress: bool = True,
    timeout: float = 600.0,
) -> dict[str, Any]:
    pairs = peers // 2
    params = {
        "peers": 2 * pairs,
        "pairs": pairs,
        "procs": procs,
        "concurrency": concurrency,
        "wait_joined": wait_joined,
        "setup_timeout": setup_timeout,
    }
    bar = Progress(f"connect[{target.label}]", total=2 * pairs, enabled=progress)
    out = run_workers(
        "connect",
        target.url,
        pairs,
        procs,
        params,
        n_barriers=2,
        n_steps=1,
        server=target.tree(),
        timeout=timeout,
        progress=bar,
        phase_names=["connect", "closing"],
    )
    payloads = out.results[0]
    span = _span_s(payloads)
    joined = sum(p["joined"] for p in payloads)
    latency = summarize(_ns_values(payloads, "connect_ns"))
    run = _base("connect", target, params)
    run["metrics"] = {
        "joined": joined,
        "joins_per_s": joined / span,
        "time_to_all_joined_s": span,
        "connect_ms": latency,
        "errors": _counter_sum(payloads, "errors"),
        "events": _counter_sum(payloads, "events"),
    }
    run["cdf"] = [list(p) for p in cdf_points(_ns_values(payloads, "connect_ns"))]
    run["server"], run["client"] = _phase(out, 0, 1)
    run["failures"] = out.errors
    run["wall_s"] = out.wall_s
    return run


def run_idle(
    target: Target,
    peers: int,
    procs: int,
    hold: float,
    ping_interval: float = 5.0,
    settle: float = 2.0,
    concurrency: int = 64,
    setup_timeout: float = 30.0,
    progress: bool = True,
    timeout: float = 900.0,
) -> dict[str, Any]:
    pairs = peers // 2
    params = {
        "peers": 2 * pairs,
        "pairs": pairs,
        "procs": procs,
        "hold": hold,
        "ping_interval": ping_interval,
        "settle": settle,
        "concurrency": concurrency,
        "setup_timeout": setup_timeout,
    }
    bar = Progress(f"idle[{target.label}]", total=2 * pairs, enabled=progress)
    out = run_workers(
        "idle",
        target.url,
        pairs,
        procs,
        params,
        n_barriers=3,
        n_steps=1,
        server=target.tree(),
        timeout=timeout,
        progress=bar,
        phase_names=["connect", "hold", "closing"],
    )
    payloads = out.results[0]
    held = sum(info.get("held", 0) for info in (out.barrier_infos[1] if out.barrier_infos else []))
    run = _base("idle", target, params)
    metrics: dict[str, Any] = {
        "held": held,
        "still_open": sum(p.get("still_open", 0) for p in payloads),
        "pings": sum(p.get("pings", 0) for p in payloads),
        "pongs": sum(p.get("pongs", 0) for p in payloads),
        "closed_during_hold": sum(p.get("closed_during_hold", 0) for p in payloads),
        "connect_s": _span_s(payloads, "connected_ns") if payloads else None,
        "errors": _counter_sum(payloads, "errors"),
    }
    s0, s1 = _snap(out.server_snaps, 0), _snap(out.server_snaps, 1)
    if s0 is not None and s1 is not None and held:
        metrics["server_rss_before_mib"] = s0.rss / 2**20
        metrics["server_rss_held_mib"] = s1.rss / 2**20
        metrics["server_bytes_per_peer"] = (s1.rss - s0.rss) / held
        metrics["server_kib_per_peer"] = (s1.rss - s0.rss) / held / 1024
    if len(out.client_snaps) > 1 and held:
        c0, c1 = out.client_snaps[0], out.client_snaps[1]
        metrics["client_kib_per_peer"] = (c1.rss - c0.rss) / held / 1024
    run["metrics"] = metrics
    run["server"], run["client"] = _phase(out, 1, 2)
    run["failures"] = out.errors
    run["wall_s"] = out.wall_s
    return run


def error_total(run: dict[str, Any]) -> int:
    metrics = run.get("metrics", {})
    total = Counter(metrics.get("errors", {}))
    return sum(total.values())
