"""``python -m bench hosts``: across emulated hosts vs one host, CURVE vs plain, 2 shards vs 1.

Root only (it builds network namespaces, see bench/netns.py).  One run builds
emulated hosts on a private bridge (``10.204.0.0/24``, addresses that exist
only inside the namespaces it makes): two router hosts, two worker hosts and a
client host.  It then measures four set-ups, each started fresh for its turn
and stopped after it, in the order ``A B C D D C B A`` (``--rounds 1``: once,
``A B C D``), so a drift of the machine during the run weighs on all alike:

* ``hosts``: a router host and two worker hosts over ``tcp://`` with CURVE keys
  made by ``mcp-tornado keys``;
* ``plain``: the same with ``--insecure`` (plain tcp://);
* ``one-host``: ``mcp-tornado serve --workers 2`` on the client host's own
  127.0.0.1 (ipc:// router link), the single-host baseline;
* ``shards2``: two router shards on two router hosts, CURVE on.

In every set-up but ``one-host``, peer A of each pair connects to worker host 1
and peer B to worker host 2 (``--url-b``), so every message crosses the router
link; with ``serve`` on one port the kernel picks each socket's worker.  Per
set-up and turn, from the client host: closed-loop relay at window 1 and 8
(deliveries/s and p99), open loop at a fixed rate (p99), and call set-up at a
fixed rate (calls/s, set-up p99), with the router's and the workers' CPU
sampled (bench/procmon.py) over each measuring phase.

Written to ``--out-dir``: ``hosts.json`` (every run, the summary and the
ratios: across hosts / one host, CURVE / plain, 2 shards / 1 shard),
``hosts.md`` (the tables) and ``logs/`` (every process's output); keys and
sockets live in a private temporary folder.  Everything it made is removed
afterwards, also on failure, Ctrl-C or SIGTERM: processes, namespaces, links,
the keys.  Exit 0 when every run was clean (nothing lost,
reordered, duplicated or failed), 1 otherwise, 2 when it cannot run here.

``python -m bench.hosts client PLAN OUT`` is its internal half: the scenarios
of one turn, run inside the client host's namespace (it refuses to run in the
machine's own network namespace).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench import report
from bench.netns import HostNet, why_unavailable

REPO = Path(__file__).resolve().parent.parent
PREFIX = "mcpb-"  # namespaces of the bench (the tests' are mcpt-)
LINK_PREFIX = "mb"
SUBNET = "10.204.0"  # /24; the tests use 10.203.0
ADDRESSES = {"router0": 1, "wa": 2, "wb": 3, "client": 4, "router1": 5}
PORT = 8000
ROUTER_PORT = 5555
SETUPS = ("hosts", "plain", "one-host", "shards2")
DESCRIPTIONS = {
    "hosts": "across hosts, CURVE",
    "plain": "across hosts, --insecure",
    "one-host": "one host, serve --workers 2 (ipc://)",
    "shards2": "across hosts, 2 router shards, CURVE",
}
#: The ratios reported: (name, numerator set-up, denominator set-up).
RATIOS = (
    ("across hosts / one host", "hosts", "one-host"),
    ("CURVE / plain", "hosts", "plain"),
    ("2 shards / 1 shard", "shards2", "hosts"),
)


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is (``--quick``: a smoke run of about a minute)."""

    relay_peers: int = 1000
    relay_s: float = 4.0
    open_pairs: int = 1000
    open_rate: float = 5.0
    open_s: float = 4.0
    calls_rate: float = 100.0
    calls_s: float = 4.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(relay_peers=40, relay_s=1.0, open_pairs=20, open_s=1.0, calls_rate=20, calls_s=1)


def plan(sizes: Sizes) -> list[tuple[str, str, dict[str, Any]]]:
    """The measurements of one turn: (name, scenario, parameters)."""
    relay = {"peers": sizes.relay_peers, "duration": sizes.relay_s, "messages": 10**9}
    return [
        ("relay_w1", "relay", {**relay, "window": 1, "procs": 1}),
        ("relay_w8", "relay", {**relay, "window": 8, "procs": 2}),
        (
            "openloop",
            "openloop",
            {"pairs": sizes.open_pairs, "rates": [sizes.open_rate], "duration": sizes.open_s},
        ),
        ("calls", "calls", {"rate": sizes.calls_rate, "duration": sizes.calls_s}),
    ]


def mcp(*args: str) -> list[str]:
    return [sys.executable, "-m", "mcp_tornado", "--log-level", "INFO", *args]


class Emulation:
    """The emulated hosts of one run and the set-up running on them (one at a time)."""

    def __init__(self, net: HostNet, work: Path, logs: Path) -> None:
        self.net = net
        self.work = work
        self.logs = logs
        self.host = {name: net.add(name, f"{SUBNET}.{n}") for name, n in ADDRESSES.items()}
        self.keys = work / "keys"
        self.static = work / "static"  # the workers serve no client: an empty folder
        self.static.mkdir(parents=True)
        for name in ("router", "wa", "wb"):
            done = subprocess.run(
                mcp("keys", str(self.keys), "--name", name),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"mcp-tornado keys failed: {done.stderr.strip()}")
        allowed = self.keys / "allowed"
        allowed.mkdir()
        for name in ("wa", "wb"):
            shutil.copy(self.keys / f"{name}.key", allowed)
        self.turn = 0
        self.servers: dict[str, subprocess.Popen[bytes]] = {}  # this turn's, by log name

    def _log(self, name: str) -> Path:
        return self.logs / f"{self.turn:02d}-{name}.log"

    def _wait_log(self, name: str, text: str, count: int, timeout: float = 60) -> None:
        """Wait until ``text`` is ``count`` times in ``name``'s log, while all still run."""
        path = self._log(name)
        deadline = time.monotonic() + timeout
        while True:
            seen = path.read_text(errors="replace") if path.exists() else ""
            if seen.count(text) >= count:
                return
            for server, process in self.servers.items():
                if process.poll() is not None:  # refused its settings, port taken ...
                    said = self._log(server).read_text(errors="replace").strip().splitlines()
                    raise RuntimeError(
                        f"{server} exited {process.returncode} while starting: "
                        f"{(said or ['(no output)'])[-1]}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {text!r} (x{count}) in {path} within {timeout:g} s")
            time.sleep(0.05)

    def _spawn(self, host: str, name: str, argv: list[str]) -> int:
        """Start a server process on ``host`` (its log: ``name``); its pid."""
        process = self.host[host].spawn(argv, self._log(name))
        self.servers[name] = process
        return process.pid

    def start(self, setup: str) -> tuple[str, str, list[int]]:
        """Start ``setup`` and wait until it serves: (URL of A, URL of B, server pids)."""
        self.turn += 1
        self.servers = {}
        if setup == "one-host":
            serve = self._spawn(
                "client",
                "serve",
                mcp(
                    "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(PORT),
                    "--router-endpoint", f"ipc://{self.work}/router.ipc",
                    "--static-dir", str(self.static), "--rate-limit", "0",
                    "--max-connections-per-ip", "0",
                ),
            )  # fmt: skip
            self._wait_log("serve", "(shard 0)", 2)  # both workers registered
            self._wait_log("serve", "open http://", 1)  # and serving
            url = f"ws://127.0.0.1:{PORT}/ws/signal/"
            return url, "", [serve]
        secure = setup != "plain"
        shards = 2 if setup == "shards2" else 1
        routers = [self.host[f"router{shard}"] for shard in range(shards)]
        endpoints = [f"tcp://{host.address}:{ROUTER_PORT}" for host in routers]
        pids: list[int] = []
        for shard, (host, endpoint) in enumerate(zip(routers, endpoints, strict=True)):
            options = ["--bind", endpoint]
            if shards > 1:
                options += ["--shard", str(shard), "--shards", str(shards)]
            if secure:
                options += ["--curve-secret-key-file", str(self.keys / "router.key_secret")]
                options += ["--curve-allowed-dir", str(self.keys / "allowed")]
            else:
                options += ["--insecure"]
            pids.append(self._spawn(host.name, f"router{shard}", mcp("router", *options)))
        for shard in range(shards):
            self._wait_log(f"router{shard}", "listening on", 1)
        for name in ("wa", "wb"):
            host = self.host[name]
            options = [arg for endpoint in endpoints for arg in ("--router", endpoint)]
            options += ["--host", host.address, "--port", str(PORT), "--static-dir"]
            options += [str(self.static), "--rate-limit", "0", "--max-connections-per-ip", "0"]
            if secure:
                options += ["--curve-secret-key-file", str(self.keys / f"{name}.key_secret")]
                options += ["--curve-server-key-file", str(self.keys / "router.key")]
            else:
                options += ["--insecure"]
            pids.append(self._spawn(name, name, mcp("worker", *options)))
        for name in ("wa", "wb"):
            self._wait_log(name, "serving on", 1)
            for shard in range(shards):
                self._wait_log(name, f"(shard {shard})", 1)
        url_a, url_b = (f"ws://{self.host[n].address}:{PORT}/ws/signal/" for n in ("wa", "wb"))
        return url_a, url_b, pids

    def stop(self) -> None:
        for host in self.host.values():
            host.stop_all()

    def measure(
        self, setup: str, sizes: Sizes, timeout: float, progress: Callable[[str], None]
    ) -> list[dict[str, Any]]:
        """One turn of ``setup``: start it, run the plan from the client host, stop it."""
        try:
            url_a, url_b, pids = self.start(setup)
            progress(f"turn {self.turn}: {setup} ({DESCRIPTIONS[setup]}) serving; measuring")
            job = {
                "label": setup,
                "url": url_a,
                "url_b": url_b,
                "pids": pids,
                "outside": _network_namespace(),  # the client refuses to run there
                "plan": plan(sizes),
            }
            job_file = self.work / f"turn{self.turn}.json"
            out_file = self.work / f"turn{self.turn}-runs.json"
            job_file.write_text(json.dumps(job))
            client = self.host["client"].spawn(
                [sys.executable, "-m", "bench.hosts", "client", str(job_file), str(out_file)],
                self._log("client"),
                env={"PYTHONPATH": str(REPO)},
            )
            try:
                code = client.wait(timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"turn {self.turn} ({setup}) took over {timeout:g} s") from None
            if code != 0 or not out_file.exists():
                raise RuntimeError(
                    f"turn {self.turn} ({setup}): the client exited {code}, see "
                    f"{self._log('client')}"
                )
            runs: list[dict[str, Any]] = json.loads(out_file.read_text())
            for run in runs:
                run["turn"] = self.turn
            return runs
        finally:
            self.stop()


def _network_namespace() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def client_main(job_file: str, out_file: str) -> int:
    """Inside the client host: run one turn's plan against its set-up, write the runs."""
    job = json.loads(Path(job_file).read_text())
    if _network_namespace() == job["outside"]:
        print("bench.hosts client runs only inside an emulated host's namespace", file=sys.stderr)
        return 2
    from bench import drivers
    from bench.wsclient import raise_nofile_limit

    raise_nofile_limit()
    target = drivers.Target(url=job["url"], label=job["label"], server_pid=job["pids"])
    runs = []
    for name, scenario, params in job["plan"]:
        run = drivers.run(scenario, target, progress=False, url_b=job["url_b"], **params)
        run["test"] = name
        runs.append(run)
        print(f"{job['label']} {name}: done", flush=True)
    Path(out_file).write_text(json.dumps(runs))
    return 0


# ---------------------------------------------------------------------- figures
def _dig(run: dict[str, Any], *path: str) -> float | None:
    value: Any = run
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) and value == value else None


def _cost(label: str, per: str, scale: float) -> Callable[[dict[str, Any]], float | None]:
    """CPU of ``label`` processes per unit of ``per`` (a rate): less swayed by other load."""

    def cost(run: dict[str, Any]) -> float | None:
        cpu, rate = _dig(run, "server", "cpu_pct_by_label", label), _dig(run, "metrics", per)
        return cpu / 100 * scale / rate if cpu is not None and rate else None

    return cost


def _at(*path: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda run: _dig(run, *path)


@dataclass(frozen=True)
class Figure:
    """One figure of the table: from which run of a turn, and how it is read from it."""

    name: str
    test: str
    read: Callable[[dict[str, Any]], float | None]
    unit: str


FIGURES = (
    Figure("relay w1 deliveries/s", "relay_w1", _at("metrics", "deliveries_per_s"), "/s"),
    Figure("relay w1 p99", "relay_w1", _at("metrics", "latency_ms", "p99"), "ms"),
    Figure("relay w8 deliveries/s", "relay_w8", _at("metrics", "deliveries_per_s"), "/s"),
    Figure("relay w8 p99", "relay_w8", _at("metrics", "latency_ms", "p99"), "ms"),
    Figure("open loop p99", "openloop", _at("metrics", "latency_ms", "p99"), "ms"),
    Figure("calls set up/s", "calls", _at("metrics", "calls_per_s"), "/s"),
    Figure("call set-up p99", "calls", _at("metrics", "setup_ms", "p99"), "ms"),
    Figure("w8: router CPU %", "relay_w8", _at("server", "cpu_pct_by_label", "router"), "%"),
    Figure("w8: workers CPU %", "relay_w8", _at("server", "cpu_pct_by_label", "worker"), "%"),
    Figure(
        "w8: router CPU per delivery", "relay_w8", _cost("router", "deliveries_per_s", 1e6), "us"
    ),
    Figure(
        "w8: workers CPU per delivery", "relay_w8", _cost("worker", "deliveries_per_s", 1e6), "us"
    ),
    Figure("calls: router CPU %", "calls", _at("server", "cpu_pct_by_label", "router"), "%"),
    Figure("calls: workers CPU %", "calls", _at("server", "cpu_pct_by_label", "worker"), "%"),
    Figure("calls: router CPU per call", "calls", _cost("router", "calls_per_s", 1e3), "ms"),
    Figure("calls: workers CPU per call", "calls", _cost("worker", "calls_per_s", 1e3), "ms"),
)


@dataclass
class Summary:
    """Per set-up and figure, the mean over its turns (and each turn's value)."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @classmethod
    def of(cls, runs: list[dict[str, Any]]) -> Summary:
        summary = cls()
        for run in runs:
            for figure in FIGURES:
                if run["test"] != figure.test:
                    continue
                value = figure.read(run)
                if value is not None:
                    by_setup = summary.values.setdefault(run["label"], {})
                    by_setup.setdefault(figure.name, []).append(value)
        return summary

    def mean(self, setup: str, figure: str) -> float | None:
        values = self.values.get(setup, {}).get(figure)
        return statistics.fmean(values) if values else None

    def spread(self, figure: str) -> float | None:
        """The widest max/min over one set-up's turns: how far to trust a ratio."""
        spreads = [
            max(values) / min(values)
            for by_figure in self.values.values()
            if len(values := by_figure.get(figure, [])) > 1 and min(values) > 0
        ]
        return max(spreads) if spreads else None

    def ratios(self) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for name, top, bottom in RATIOS:
            out[name] = {}
            for figure in FIGURES:
                a, b = self.mean(top, figure.name), self.mean(bottom, figure.name)
                out[name][figure.name] = a / b if a is not None and b else None
        return out


def capacity(summary: Summary, setup: str = "hosts") -> dict[str, float | None]:
    """What one router shard and one worker carried in ``setup``, and their CPU for it.

    Closed loop at window 8: every delivery crossed the router once and two
    workers (received on A's, sent on B's), so one worker spent half the
    workers' CPU per delivery.  Calls (open loop, 2 joins, an offer, an answer,
    16 candidates, 2 leaves each; every call touches both workers): CPU
    milliseconds per call, the idle cost (heartbeats) included.  Per core: what
    one fully busy core would carry at that cost.
    """
    router_us = summary.mean(setup, "w8: router CPU per delivery")
    workers_us = summary.mean(setup, "w8: workers CPU per delivery")
    router_ms = summary.mean(setup, "calls: router CPU per call")
    workers_ms = summary.mean(setup, "calls: workers CPU per call")
    worker_us = workers_us / 2 if workers_us else None
    worker_ms = workers_ms / 2 if workers_ms else None
    return {
        "messages_per_s": summary.mean(setup, "relay w8 deliveries/s"),
        "router_cpu_pct": summary.mean(setup, "w8: router CPU %"),
        "worker_cpu_pct": (summary.mean(setup, "w8: workers CPU %") or 0) / 2 or None,
        "router_us_per_message": router_us,
        "worker_us_per_message": worker_us,
        "router_messages_per_core_s": 1e6 / router_us if router_us else None,
        "worker_messages_per_core_s": 1e6 / worker_us if worker_us else None,
        "calls_per_s": summary.mean(setup, "calls set up/s"),
        "router_cpu_ms_per_call": router_ms,
        "worker_cpu_ms_per_call": worker_ms,
        "router_calls_per_core_s": 1e3 / router_ms if router_ms else None,
        "worker_calls_per_core_s": 1e3 / worker_ms if worker_ms else None,
    }


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit in ("ms", "us", "x"):
        return f"{value:.2f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def markdown(
    summary: Summary, runs: list[dict[str, Any]], order: list[str], load: tuple[float, float]
) -> str:
    """The result table (means over the turns), the ratios and the capacity arithmetic."""
    present = [s for s in SETUPS if s in summary.values]
    ratios = summary.ratios()
    head = ["figure", *present, *ratios, "turn spread"]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for figure in FIGURES:
        cells = [f"{figure.name} ({figure.unit})"]
        cells += [_fmt(summary.mean(s, figure.name), figure.unit) for s in present]
        cells += [_fmt(ratios[r][figure.name], "x") for r in ratios]
        cells.append(_fmt(summary.spread(figure.name), "x"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Set-ups: " + "; ".join(f"{s}: {DESCRIPTIONS[s]}" for s in present) + ".")
    lines.append(
        f"Turns: {' '.join(order)}; each figure is the mean over its turns. Ratios are "
        "left / right set-up (p99 and CPU: above 1 is worse); turn spread: the widest "
        "max/min over one set-up's turns (a ratio closer to 1 than that is noise). CPU: "
        "percent of one core over the measuring phase, the client on the same cores; "
        f"1-minute load average {load[0]:.2f} at the start, {load[1]:.2f} at the end "
        f"({os.cpu_count()} cores)."
    )
    lost = sum(int(run["metrics"].get("lost", 0)) for run in runs)
    reordered = sum(int(run["metrics"].get("reordered", 0)) for run in runs)
    failed = sum(int(run["metrics"].get("failed", 0)) for run in runs)
    lines.append(f"Lost: {lost}, reordered: {reordered}, failed calls: {failed}.")
    cap = capacity(summary)
    if cap["messages_per_s"] is not None:
        lines += [
            "",
            "Capacity (set-up `hosts`): one router shard carried "
            f"{_fmt(cap['messages_per_s'])} messages/s at {_fmt(cap['router_cpu_pct'])} % CPU "
            f"({_fmt(cap['router_us_per_message'], 'ms')} us each, "
            f"{_fmt(cap['router_messages_per_core_s'])}/s per core); one worker "
            f"{_fmt(cap['messages_per_s'])} messages/s in or out at "
            f"{_fmt(cap['worker_cpu_pct'])} % ({_fmt(cap['worker_us_per_message'], 'ms')} us "
            f"each, {_fmt(cap['worker_messages_per_core_s'])}/s per core). Calls: "
            f"{_fmt(cap['calls_per_s'])}/s set up, router "
            f"{_fmt(cap['router_cpu_ms_per_call'], 'ms')} ms CPU per call "
            f"({_fmt(cap['router_calls_per_core_s'])}/s per core), a worker "
            f"{_fmt(cap['worker_cpu_ms_per_call'], 'ms')} ms "
            f"({_fmt(cap['worker_calls_per_core_s'])}/s per core).",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- the run
def turn_order(rounds: int) -> list[str]:
    """``A B C D`` then, for a second round, ``D C B A`` (and so on, alternating)."""
    order: list[str] = []
    for n in range(rounds):
        order += list(SETUPS) if n % 2 == 0 else list(reversed(SETUPS))
    return order


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run like Ctrl-C: through ``finally``, which cleans up."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(args: argparse.Namespace) -> int:
    problem = why_unavailable()
    if problem is not None:
        print(f"bench hosts: {problem}", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print("bench hosts: --rounds must be 1 or more", file=sys.stderr)
        return 2
    sizes = Sizes.quick() if args.quick else Sizes()
    order = turn_order(args.rounds)
    out_dir = Path(args.out_dir).resolve()
    logs = out_dir / "logs"  # this run's only: a log of an earlier one would fake readiness
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    # Keys and the ipc:// socket: private (0700), short (a socket path has ~100 characters at
    # most), removed at the end.
    work = Path(tempfile.mkdtemp(prefix=PREFIX))
    runs: list[dict[str, Any]] = []

    def say(line: str) -> None:
        if not args.no_progress:
            print(f"bench hosts: {line}", file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    with _terminate_as_exit():
        net = HostNet(prefix=PREFIX, link_prefix=LINK_PREFIX)
        print(f"bench hosts: network {net.suffix}, work folder {work}", flush=True)
        try:
            emulation = Emulation(net, work, logs)
            for setup in order:
                runs += emulation.measure(setup, sizes, args.timeout, say)
        except RuntimeError as exc:  # a set-up that did not start, a client that failed
            print(f"bench hosts: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench hosts: interrupted; everything it started is removed", file=sys.stderr)
            return 130
        finally:
            net.close()
            shutil.rmtree(work, ignore_errors=True)
    summary = Summary.of(runs)
    load = (load_before, os.getloadavg()[0])
    table = markdown(summary, runs, order, load)
    result = {
        "format": "mcp-bench-hosts/1",
        "order": order,
        "sizes": dataclasses.asdict(sizes),
        "network": net.suffix,
        "load_average_1min": load,
        "means": {s: {f: summary.mean(s, f) for f in summary.values[s]} for s in summary.values},
        "turns": summary.values,
        "ratios": summary.ratios(),
        "capacity": capacity(summary),
        "runs": runs,
    }
    (out_dir / "hosts.json").write_text(json.dumps(result, indent=1, default=str))
    (out_dir / "hosts.md").write_text(table)
    print(table, end="")
    print(f"results: {out_dir / 'hosts.json'}, {out_dir / 'hosts.md'}")
    failed = False
    for run in runs:
        for problem in report.problems(run):
            failed = True
            print(f"bench: FAILED [{run['label']} {run['test']}]: {problem}", file=sys.stderr)
    return 1 if failed else 0


def add_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """The ``hosts`` subcommand of ``python -m bench``."""
    p = sub.add_parser(
        "hosts",
        help="across emulated hosts vs one host, CURVE vs plain, 2 router shards vs 1 (root)",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=formatter,
    )
    p.add_argument("--out-dir", default="bench/results/hosts", help="JSON, markdown, logs")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run, ~1-2 min)")
    p.add_argument(
        "--rounds", type=int, default=2, help="turns per set-up, alternating order (ABCD DCBA)"
    )
    p.add_argument("--timeout", type=float, default=600.0, help="limit per turn, seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "client":
        sys.exit(client_main(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python -m bench.hosts client JOB OUT (internal: use python -m bench hosts)")
