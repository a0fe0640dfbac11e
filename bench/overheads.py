"""``python -m bench overheads``: what each optional cost of mcp-tornado costs, A/B in one run.

Issue 17 asks for each of these within 3% (TLS against the reference relay doing TLS):

* metrics on (``--metrics-port``) vs off;
* TLS (``--certfile``/``--keyfile``, measured over ``wss://``) vs plain, and the picows
  reference relay with TLS vs plain: our TLS cost against its TLS cost;
* two router shards vs one (``--shards-cmd``: the command is a parameter, whatever
  spelling the sharded server takes);
* resume bookkeeping: the same server, clients joining with ``?resumable=1`` vs without.

Every variant (``VARIANTS``) is started at once on free ports (compare's ``start``: the
TLS ones get compare's throwaway certificate) and measured step by step, taking turns in
an order that rotates and reverses at each step, so all see the same machine in the same
minute; while one is measured the others sit idle. The steps are compare's relay w1,
relay w8 (2 client procs), connect storm and open loop 1,000 pairs x 5 msg/s, with
compare's sizes (``--quick``: its smoke sizes). Writes ``overheads.json`` and
``overheads.md`` into ``--out-dir``: one table, figure by figure, A, B, B/A and whether B
is within 3% of A. CURVE across emulated hosts is measured by the hostbench, not here.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import compare, drivers, report
from bench.procmon import SpawnedServer

#: Our server as compare runs it: metrics on, rate limit and per-address cap off.
SERVER_CMD = (
    "mcp-tornado serve --workers {workers} --host 127.0.0.1 --port {port} --rate-limit 0"
    " --max-connections-per-ip 0 --metrics-port {metrics_port}"
)
METRICS_FLAG = " --metrics-port {metrics_port}"
TLS_FLAGS = " --certfile {certfile} --keyfile {keyfile}"
REFERENCE_CMD = f"{sys.executable} -m bench.reference_relay --host 127.0.0.1 --port {{port}}"
#: The A/B pairs ``--skip`` knows.
OVERHEADS = ("metrics", "tls", "shards", "resume")
#: Runs ``--tests`` knows.
TESTS = ("relay_w1", "relay_w8_2procs", "connect", "openloop")
TOLERANCE = 0.03


@dataclass(frozen=True)
class Variant:
    """One server set-up under test: a compare target, plus a query the clients add
    when they join (``resumable=1``)."""

    spec: compare.Spec
    query: str = ""


@dataclass(frozen=True)
class AB:
    """One overhead: variant ``a`` (without) against ``b`` (with); ``against``: the
    reference's own A/B, when the cost is judged against the reference doing the same;
    ``judged``: ``False`` for a row shown for information (the reference's own cost)."""

    what: str
    a: str
    b: str
    against: tuple[str, str] | None = None
    judged: bool = True


#: (figure, test, metric path, higher is better)
FIGURES: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("relay w1 deliveries/s", "relay_w1", ("deliveries_per_s",), True),
    ("relay w1 server CPU us/delivery", "relay_w1", ("cpu_us_per_delivery",), False),
    ("relay w8 2 procs deliveries/s", "relay_w8_2procs", ("deliveries_per_s",), True),
    ("relay w8 server CPU us/delivery", "relay_w8_2procs", ("cpu_us_per_delivery",), False),
    ("connect storm joins/s", "connect", ("joins_per_s",), True),
    ("open loop 1,000 x 5/s p99 ms", "openloop", ("latency_ms", "p99"), False),
)


def plan(args: argparse.Namespace) -> tuple[list[Variant], list[AB]]:
    """The variants to start and the A/B pairs to report, from the options."""
    skip: set[str] = args.skip
    server = compare.resolve_command(args.server_cmd)
    if server is None:
        raise SystemExit(f"bench overheads: `{args.server_cmd.split()[0]}` is not installed")
    if METRICS_FLAG not in server:
        raise SystemExit(f"bench overheads: --server-cmd must contain '{METRICS_FLAG.strip()}'")
    w = args.workers

    def mcp(name: str, command: str, tls: bool = False) -> compare.Spec:
        return compare.Spec(name, "mcp", command, workers=w, tls=tls)

    variants = [Variant(mcp("plain", server))]
    pairs: list[AB] = []
    if "metrics" not in skip:
        variants.append(Variant(mcp("metrics-off", server.replace(METRICS_FLAG, ""))))
        pairs.append(AB("metrics: off (A) vs on (B)", "metrics-off", "plain"))
    if "tls" not in skip:
        variants += [
            Variant(mcp("tls", server + TLS_FLAGS, tls=True)),
            Variant(compare.Spec("reference", "reference", REFERENCE_CMD)),
            Variant(
                compare.Spec("reference-tls", "reference", REFERENCE_CMD + TLS_FLAGS, tls=True)
            ),
        ]
        pairs += [
            AB("TLS: plain (A) vs TLS (B)", "plain", "tls", against=("reference", "reference-tls")),
            AB(
                "TLS, the reference relay: plain (A) vs TLS (B)",
                "reference",
                "reference-tls",
                judged=False,
            ),
        ]
    if "shards" not in skip:
        shards = compare.resolve_command(args.shards_cmd) or args.shards_cmd
        variants.append(Variant(mcp("shards2", shards)))
        pairs.append(AB("router shards: one (A) vs two (B)", "plain", "shards2"))
    if "resume" not in skip:
        variants.append(Variant(mcp("resumable", server), query="resumable=1"))
        pairs.append(AB("resume: clients plain (A) vs ?resumable=1 (B)", "plain", "resumable"))
    return variants, pairs


def steps(sz: compare.Sizes, tests: set[str] | None) -> list[compare.Step]:
    """compare's runs of the figures above, with its sizes."""
    relay = {"messages": 10**9, "duration": sz.relay_s, "setup_timeout": 30.0}
    out: list[compare.Step] = [
        ("relay_w1", "relay", {"peers": sz.relay_peers, "procs": 1, "window": 1, **relay}),
        ("relay_w8_2procs", "relay", {"peers": sz.relay_peers, "procs": 2, "window": 8, **relay}),
        ("connect", "connect", {"peers": sz.connect_peers, "procs": 2, "setup_timeout": 30.0}),
        (
            "openloop",
            "openloop",
            {"pairs": sz.open_pairs, "rates": [sz.open_rate], "duration": sz.open_s},
        ),
    ]
    return [step for step in out if tests is None or step[0] in tests]


def schedule(names: list[str], n_steps: int) -> list[list[str]]:
    """Per step, the order the variants are measured in: rotated by one at each step and
    reversed at every other, so no variant is always first, last or after the same one."""
    out = []
    for i in range(n_steps):
        k = i % len(names) if names else 0
        order = names[k:] + names[:k]
        out.append(order[::-1] if i % 2 else order)
    return out


def figure(run: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    """One figure of a run; ``cpu_us_per_delivery``: the server's CPU time per delivery."""
    if run is None:
        return None
    if path == ("cpu_us_per_delivery",):
        cpu = ((run.get("server") or {}).get("cpu_pct")) or None
        rate = (run.get("metrics") or {}).get("deliveries_per_s") or None
        return None if cpu is None or rate is None else cpu / 100.0 / rate * 1e6
    value: Any = run.get("metrics")
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def median_figure(
    runs: list[dict[str, Any]], variant: str, test: str, path: tuple[str, ...]
) -> float | None:
    """The median of a figure over the rounds (``--rounds``) of ``variant``'s ``test``."""
    values = [
        v
        for run in runs
        if run.get("overhead_variant") == variant and run.get("compare_test") == test
        for v in [figure(run, path)]
        if v is not None
    ]
    return statistics.median(values) if values else None


def within(ratio: float | None, higher: bool, tolerance: float = TOLERANCE) -> bool | None:
    """B/A within ``tolerance`` of A, on the side that matters (a B that is better is)."""
    if ratio is None:
        return None
    return ratio >= 1.0 - tolerance if higher else ratio <= 1.0 + tolerance


def rows(runs: list[dict[str, Any]], pairs: list[AB]) -> list[list[str]]:
    """The overheads table: A/B, figure, A, B, B/A, within 3%? For a pair judged against
    the reference, the last two columns compare ours B/A with the reference's B/A."""
    f = report.fmt
    out = []
    for ab in pairs:
        if not any(r.get("overhead_variant") == ab.b for r in runs):
            out.append([ab.what, "-", "-", "-", f"not measured: {ab.b} did not run", "-"])
            continue
        for name, test, path, higher in FIGURES:
            a, b = median_figure(runs, ab.a, test, path), median_figure(runs, ab.b, test, path)
            if a is None and b is None:
                continue
            ratio = compare._ratio(b, a)
            shown = f(ratio, 3)
            if ab.against is not None:
                ra = median_figure(runs, ab.against[0], test, path)
                rb = median_figure(runs, ab.against[1], test, path)
                theirs = compare._ratio(rb, ra)
                relative = compare._ratio(ratio, theirs)
                shown = f"{f(ratio, 3)} (reference {f(theirs, 3)}: ours / its {f(relative, 3)})"
                ratio = relative
            ok = within(ratio, higher) if ab.judged else None
            verdict = "-" if ok is None else ("yes" if ok else "NO")
            out.append([ab.what, name, f(a, 2), f(b, 2), shown, verdict])
    return out


def markdown(
    runs: list[dict[str, Any]],
    variants: list[Variant],
    pairs: list[AB],
    notes: list[str],
    wall: float,
    rounds: int = 1,
) -> str:
    out = [
        "### Overheads",
        "",
        report.machine_markdown(None),
        f"Generated by `python -m bench overheads` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {wall / 60:.1f} min; every "
        f"variant started at once and measured in turns, step by step, {rounds} round(s); "
        "A and B are medians over the rounds.",
        "",
        report.markdown_table(
            ["A/B", "figure", "A", "B", "B/A", f"within {TOLERANCE:.0%}?"], rows(runs, pairs)
        ),
        "",
        "Variants:",
        "",
    ]
    for v in variants:
        joins = f", clients join with `?{v.query}`" if v.query else ""
        out.append(f"- `{v.spec.name}`: `{v.spec.command}`{joins}")
    notes = [
        *notes,
        "CURVE vs plain across emulated hosts is measured by the hostbench (its own table).",
    ]
    out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def main(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    variants, pairs = plan(args)
    sz = compare.Sizes.quick() if args.quick else compare.Sizes()
    todo = steps(sz, args.tests)
    tls = None
    if any(v.spec.tls for v in variants):
        tls = compare.tls_files(out_dir, trust=not (args.ca or args.insecure))
    notes: list[str] = []
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        live: dict[str, tuple[SpawnedServer, str | None]] = {}
        for v in variants:
            try:
                live[v.spec.name] = compare.start(
                    v.spec, out_dir, stack, tls if v.spec.tls else None
                )
            except Exception as exc:  # e.g. a --shards-cmd this build does not know
                notes.append(
                    f"{v.spec.name} failed to start: {type(exc).__name__}: {exc} "
                    f"(log: {compare.log_path(out_dir, v.spec)})"
                )
        time.sleep(1.0)  # let every worker finish starting
        by_name = {v.spec.name: v for v in variants}
        names = [v.spec.name for v in variants if v.spec.name in live]
        turns = schedule(names, len(todo) * args.rounds)  # the rotation goes on round to round
        for i, order in enumerate(turns):
            test, scenario, params = todo[i % len(todo)]
            for name in order:
                if name not in live:
                    continue  # failed at an earlier step
                server, metrics_url = live[name]
                query = by_name[name].query
                url = server.url + (f"?{query}" if query else "")
                target = drivers.Target(url, name, server.pid, metrics_url)
                try:
                    run = drivers.run(scenario, target, progress=not args.no_progress, **params)
                except Exception as exc:
                    notes.append(f"{name} failed at {test}: {type(exc).__name__}: {exc}")
                    live.pop(name)[0].stop()
                    continue
                run["overhead_variant"] = name
                run["overhead_round"] = i // len(todo)
                run["compare_test"] = test
                runs.append(run)
                report.print_summary([run])
    wall = time.monotonic() - started
    json_path = report.write_json(out_dir / "overheads.json", runs)
    md = markdown(runs, variants, pairs, notes, wall, args.rounds)
    md_path = out_dir / "overheads.md"
    md_path.write_text(md)
    print(md)
    print(f"results: {json_path}\nmarkdown: {md_path}")
    return 0


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """The ``overheads`` subcommand of ``python -m bench``."""
    p = sub.add_parser(
        "overheads",
        help="each optional cost A/B in one run: metrics, TLS (and the reference's), "
        "router shards, resume",
        formatter_class=formatter,
    )
    p.add_argument("--out-dir", default="bench/results/overheads", help="JSON and markdown here")
    p.add_argument("--quick", action="store_true", help="compare's smoke sizes (~1 min)")
    p.add_argument("--workers", type=int, default=2, help="workers of every mcp-tornado variant")
    p.add_argument(
        "--rounds",
        type=_positive,
        default=1,
        help="measure every step this many times (in turns, the whole list each time); the "
        "table shows medians",
    )
    p.add_argument(
        "--server-cmd",
        default=SERVER_CMD,
        help="our server, metrics on: must contain '--metrics-port {metrics_port}' (the "
        "metrics-off variant drops it; the TLS one adds --certfile/--keyfile)",
    )
    p.add_argument(
        "--shards-cmd",
        default=SERVER_CMD + " --shards 2",
        help="our server with two router shards (takes the placeholders of --server-cmd)",
    )
    p.add_argument(
        "--skip",
        type=compare.names_option(OVERHEADS, "A/B"),
        default=set(),
        help="comma list of A/Bs to leave out: " + ", ".join(OVERHEADS),
    )
    p.add_argument(
        "--tests",
        type=compare.names_option(TESTS, "run"),
        default=None,
        help="comma list of the runs to do: " + ", ".join(TESTS) + " (default: all)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--ca", metavar="FILE", help="trust this CA instead of the generated one")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")


def _positive(text: str) -> int:
    """``--rounds``: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1: {text!r}")
    return value
