"""``python -m bench SCENARIO ...``: the command line."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import drivers, hosts, plots, report
from bench.compare import COMPARE_TESTS, also_option, resolve_command, skip_option, tests_option
from bench.procmon import SpawnedServer, check_loopback
from bench.scenarios import CALL_ARRIVALS
from bench.wsclient import raise_nofile_limit, set_tls_trust

#: mcp-tornado's own default address (``mcp-tornado serve``, ``./serve.sh``).
DEFAULT_URL = "ws://127.0.0.1:8000/ws/signal/"
#: Options not spelled like their parameter (the others: rejoin_delay -> --rejoin-delay)
FLAGS = {"rates": "--rate", "stop_p99_ms": "--stop-p99"}
#: Options that take one of a few words.
CHOICES = {"arrivals": CALL_ARRIVALS}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, lists as typed (``2000`` or ``5,10``); none
    where the help already says it or there is nothing to show (off, or derived)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == ""
            or not action.option_strings
        ):
            return text
        if isinstance(default, (list, set, frozenset)):
            values = sorted(default) if isinstance(default, (set, frozenset)) else default
            shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
            shown = shown or "none"
        else:
            shown = f"{default:g}" if isinstance(default, float) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.replace(" ", "").split(",") if x]


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target and output")
    g.add_argument(
        "--url",
        action="append",
        help="WebSocket endpoint (repeat to compare several servers; default: from --spawn's "
        f"--host/--port, else {DEFAULT_URL}, where `mcp-tornado serve` and ./serve.sh listen)",
    )
    g.add_argument("--label", action="append", help="name per --url (default: host:port)")
    g.add_argument(
        "--spawn",
        action="append",
        help='start the server per --url, e.g. "mcp-tornado serve --workers 2 --port 8001 '
        '--rate-limit 0" (mcp-tornado: the console script beside this Python if not on PATH); '
        "waits for the port, samples its process tree, kills its process group at the end",
    )
    g.add_argument("--spawn-cwd", default=None, help="working directory for --spawn")
    g.add_argument(
        "--server-pid", action="append", type=int, help="sample this pid and its children"
    )
    g.add_argument(
        "--metrics-url",
        action="append",
        help="the server's Prometheus /metrics, per --url (mcp-tornado: the router's "
        "--metrics-port): scraped before and after each run, and every count of the "
        "server's that disagrees with the client's (messages relayed, joins) is reported "
        "and fails the run",
    )
    g.add_argument("--procs", type=int, default=1, help="client processes")
    _tls_options(g)
    g.add_argument("--out", help="write the JSON results here")
    g.add_argument("--plot-dir", help="write PNG plots here (created if missing)")
    g.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    g.add_argument("--timeout", type=float, default=600.0, help="hard limit per run, seconds")


def _tls_options(g: argparse._ActionsContainer) -> None:
    g.add_argument(
        "--ca",
        metavar="FILE",
        help="wss:// targets: trust the CA certificates in this PEM file (default: the system's)",
    )
    g.add_argument(
        "--insecure",
        action="store_true",
        help="wss:// targets: do not verify the server's certificate",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load benchmarks for MCP signaling servers (see bench/README.md). "
        "Exits 1 when a run had failed connections, lost messages or errors.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    for name, spec in drivers.SCENARIOS.items():
        p = sub.add_parser(
            name, help=spec.help, description=spec.help, formatter_class=HelpFormatter
        )
        _common(p)
        for param, text in spec.options.items():
            default = spec.params[param]
            if param == "peers":  # a sweep: one run per value
                kind: Callable[[str], Any] = _int_list
                default = [default]
            else:
                kind = _float_list if isinstance(default, list) else type(default)
            flag = FLAGS.get(param, "--" + param.replace("_", "-"))
            metavar = flag[2:].replace("-", "_").upper()
            p.add_argument(
                flag,
                dest=param,
                metavar=metavar,
                type=kind,
                default=default,
                help=text,
                choices=CHOICES.get(param),
            )

    p = sub.add_parser(
        "libs", help="micro-measure WebSocket client libraries", formatter_class=HelpFormatter
    )
    p.add_argument("--url", default=None, help="server (default: start the reference relay)")
    p.add_argument("--messages", type=int, default=20000, help="round trips per library")
    p.add_argument("--pairs", type=int, default=20, help="pairs of peers")
    p.add_argument("--out", help="write JSON here")

    p = sub.add_parser(
        "compare",
        help="the full comparison: mcp-tornado 1/2/4 workers vs baselines (and --also builds)",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out-dir", default="bench/results", help="JSON, PNG and markdown go here")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run, ~1 min)")
    p.add_argument(
        "--workers",
        type=_int_list,
        default=[1, 2, 4],
        help="comma list of worker counts for mcp-tornado and --also",
    )
    p.add_argument(
        "--server-cmd",
        default=(
            "mcp-tornado serve --workers {workers} --host 127.0.0.1 --port {port} --rate-limit 0"
            " --max-connections-per-ip 0 --metrics-port {metrics_port}"
        ),
        help="our server; the per-connection rate limit (50 msg/s) and the per-address cap "
        "are off for load tests; with {metrics_port}, its /metrics are scraped around each "
        "run and checked against the client's counts",
    )
    p.add_argument(
        "--tests",
        type=tests_option,
        default=None,
        help="comma list of the runs to do: " + ", ".join(COMPARE_TESTS) + " (default: all)",
    )
    p.add_argument(
        "--baseline-dir",
        default=None,
        help="Channels baseline folder (default ../shared/baselines/channels_seed)",
    )
    p.add_argument(
        "--skip",
        type=skip_option,
        default=set(),
        help="comma list of targets to skip: mcp (this checkout), baseline, reference",
    )
    p.add_argument(
        "--also",
        action="append",
        type=also_option,
        metavar="NAME[@CWD]=COMMAND",
        help="one more mcp-tornado build (e.g. a worktree of an older commit), per --workers "
        "count, as target NAME-Nw, measured beside mcp-tornado Nw with the same runs, "
        "interleaved step by step; COMMAND takes {workers} and {port} like --server-cmd "
        "and runs in CWD (default: an empty temp dir); one that also takes {certfile} and "
        "{keyfile} serves TLS and is measured over wss:// (compare makes the certificate). "
        "Repeatable. See bench/README.md, 'Before and after'",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    _tls_options(p)

    hosts.add_parser(sub, HelpFormatter)
    from bench import overheads

    overheads.add_parser(sub, HelpFormatter)

    p = sub.add_parser(
        "report",
        help="markdown tables (and plots) again from a compare.json",
        formatter_class=HelpFormatter,
    )
    p.add_argument("file", help="a compare.json")
    p.add_argument("--plot-dir", help="also write the compare plots here")

    p = sub.add_parser(
        "plot", help="plots from one or more JSON result files", formatter_class=HelpFormatter
    )
    p.add_argument("files", nargs="+", help="results written by --out")
    p.add_argument("--plot-dir", required=True, help="write the PNGs here")

    p = sub.add_parser(
        "reference-relay", help="run the picows reference relay", formatter_class=HelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8799, help="port to listen on")
    p.add_argument("--certfile", help="PEM certificate chain: serve wss:// (with --keyfile)")
    p.add_argument("--keyfile", help="PEM private key of --certfile")
    return parser


def url_from_spawn(command: str) -> str | None:
    """``ws://HOST:PORT/ws/signal/`` from the --host/--port (or -b/-p) of a spawn command."""
    words = shlex.split(command)
    host, port = "127.0.0.1", None
    for i, word in enumerate(words[:-1]):
        if word in ("--port", "-p"):
            port = words[i + 1]
        elif word in ("--host", "-b", "--bind"):
            host = words[i + 1]
    for word in words:
        if word.startswith("--port="):
            port = word.split("=", 1)[1]
        elif word.startswith("--host="):
            host = word.split("=", 1)[1]
    tls = any(word == "--certfile" or word.startswith("--certfile=") for word in words)
    return f"{'wss' if tls else 'ws'}://{host}:{port}/ws/signal/" if port else None


def default_urls(args: argparse.Namespace) -> list[str]:
    if args.url:
        return list(args.url)
    spawns = getattr(args, "spawn", None) or []
    derived = [url_from_spawn(cmd) for cmd in spawns]
    if spawns and all(derived):
        return [u for u in derived if u]
    return [DEFAULT_URL]


@contextlib.contextmanager
def targets(args: argparse.Namespace) -> Iterator[list[drivers.Target]]:
    """Yield one Target per --url, spawning servers as asked; always stops them."""
    urls: list[str] = default_urls(args)
    labels: list[str] = args.label or []
    spawns: list[str] = args.spawn or []
    pids: list[int] = args.server_pid or []
    metrics: list[str] = args.metrics_url or []
    for flag, values in (
        ("--label", labels),
        ("--spawn", spawns),
        ("--server-pid", pids),
        ("--metrics-url", metrics),
    ):
        if values and len(values) != len(urls):
            raise SystemExit(f"{flag} given {len(values)} times for {len(urls)} --url")
    for url in urls:
        check_loopback(url)
    if getattr(args, "url_b", ""):
        check_loopback(args.url_b)
    spawned: list[SpawnedServer] = []
    out: list[drivers.Target] = []
    try:
        for i, url in enumerate(urls):
            label = labels[i] if labels else url.split("//", 1)[-1].split("/", 1)[0]
            pid = pids[i] if pids else None
            if spawns:
                # `mcp-tornado ...` runs from this Python's venv when it is not on PATH
                command = resolve_command(spawns[i]) or spawns[i]
                server = SpawnedServer(command, url, cwd=args.spawn_cwd)
                spawned.append(server)
                try:
                    server.start()
                except (OSError, RuntimeError) as exc:  # not found, exited at once ...
                    raise SystemExit(f"bench: --spawn {spawns[i]!r} did not start: {exc}") from None
                pid = server.pid
            metrics_url = metrics[i] if metrics else None
            out.append(
                drivers.Target(url=url, label=label, server_pid=pid, metrics_url=metrics_url)
            )
        yield out
    finally:
        for server in spawned:
            server.stop()


def _finish(args: argparse.Namespace, runs: list[dict[str, Any]]) -> int:
    """Summary, JSON, plots; 1 when any run failed a connection, lost a message or saw
    an error (one line per problem on stderr), else 0."""
    report.print_summary(runs)
    if args.out:
        path = report.write_json(args.out, runs)
        print(f"results: {path}")
    if args.plot_dir:
        made, why_not = plots.all_plots_explained(runs, args.plot_dir)
        for path in made:
            print(f"plot: {path}")
        for line in why_not:
            print(f"plot: none {line}")
    failed = False
    for run in runs:
        for problem in report.problems(run):
            failed = True
            print(
                f"bench: FAILED [{run.get('label')} {run.get('scenario')}]: {problem}",
                file=sys.stderr,
            )
    if report.rate_limited(runs):
        print(f"bench: {report.RATE_LIMIT_HINT}", file=sys.stderr)
    return 1 if failed else 0


def _each_target(
    args: argparse.Namespace, body: Callable[[drivers.Target], list[dict[str, Any]]]
) -> int:
    runs: list[dict[str, Any]] = []
    # One target at a time: a spawned server runs only while it is measured.
    urls = default_urls(args)
    for i in range(len(urls)):
        sub = argparse.Namespace(**vars(args))
        sub.url = [urls[i]]
        sub.label = [args.label[i]] if args.label else None
        sub.spawn = [args.spawn[i]] if args.spawn else None
        sub.server_pid = [args.server_pid[i]] if args.server_pid else None
        sub.metrics_url = [args.metrics_url[i]] if args.metrics_url else None
        with targets(sub) as (target,):
            runs += body(target)
    return _finish(args, runs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raise_nofile_limit()
    set_tls_trust(getattr(args, "ca", None), getattr(args, "insecure", False))
    progress = not getattr(args, "no_progress", False)
    cmd = args.command

    if cmd in drivers.SCENARIOS:
        given = {k: v for k, v in vars(args).items() if k in drivers.SCENARIOS[cmd].params}
        sizes = given.pop("peers", None)  # --peers: one run per value
        each = [given] if sizes is None else [{**given, "peers": n} for n in sizes]
        return _each_target(
            args,
            lambda t: [
                drivers.run(cmd, t, progress=progress, timeout=args.timeout, **params)
                for params in each
            ],
        )
    if cmd == "libs":
        from bench import libcompare

        return libcompare.main(args)
    if cmd == "compare":
        from bench import compare

        return compare.main(args)
    if cmd == "hosts":
        return hosts.main(args)
    if cmd == "overheads":
        from bench import overheads

        return overheads.main(args)
    if cmd == "report":
        from bench import compare

        print(compare.report_from_file(args.file, args.plot_dir), end="")
        return 0
    if cmd == "plot":
        runs: list[dict[str, Any]] = []
        for name in args.files:
            runs += report.read_json(name)["runs"]
        made, why_not = plots.all_plots_explained(runs, args.plot_dir)
        for path in made:
            print(f"plot: {path}")
        for line in why_not:
            print(f"plot: none {line}")
        return 0
    if cmd == "reference-relay":
        from bench import reference_relay

        tls = ["--certfile", args.certfile] if args.certfile else []
        tls += ["--keyfile", args.keyfile] if args.keyfile else []
        reference_relay.main(["--host", args.host, "--port", str(args.port), *tls])
        return 0
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Path", "build_parser", "main"]
