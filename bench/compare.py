"""``python -m bench compare``: the whole suite against several servers in one run.

Targets, each started here on a free port and stopped (process group killed) after
its runs:

* ``mcp-tornado`` with 1, 2 and 4 workers (``--server-cmd``), if the console script
  is installed;
* the Django Channels baseline from ``../shared/baselines/channels_seed`` beside the
  repository (a writable copy, run with daphne), if present and if django,
  channels and daphne import; otherwise skipped with a note;
* the picows reference relay (``bench/reference_relay.py``);
* with ``--also NAME=COMMAND`` (repeatable), another build of mcp-tornado per worker
  count, named ``NAME-2w`` etc. (e.g. a worktree of an older commit): started beside
  the ``mcp-tornado 2w`` of this checkout and measured with exactly its runs,
  interleaved run by run, so before and after see the same machine conditions.
  A COMMAND that takes ``{certfile}`` and ``{keyfile}`` too serves TLS: compare makes
  a throwaway CA and certificate for 127.0.0.1 (with ``trustme``), passes their
  paths, measures that target over ``wss://`` and trusts that CA (unless ``--ca`` or
  ``--insecure`` says otherwise).

Each target gets the same suite (``suite``): idle hold, connect storm, relays, open loop
and its sweep, churn, and the call set-up capacity sweep (bench/callsweep.py).

Writes ``compare.json``, ``compare.md`` (machine info, the results table, the targets of
issue 17 marked met / NOT met, ready to paste into bench/README.md) and PNG plots into
``--out-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import re
import shutil
import string
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import callsweep, drivers, plots, report
from bench.procmon import SpawnedServer, free_port
from bench.wsclient import set_tls_trust

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Sizes:
    relay_peers: int = 2000
    relay_s: float = 8.0
    scaling_peers: list[int] = field(default_factory=lambda: [500, 5000])
    open_pairs: int = 1000
    open_rate: float = 5.0
    # sqrt(2) steps per pair (x 1,000 pairs): 5,000 ... 160,000 msg/s offered
    sweep_rates: list[float] = field(
        default_factory=lambda: [5, 7, 10, 14, 20, 28, 40, 56, 80, 113, 160]
    )
    open_s: float = 5.0
    connect_peers: int = 8000  # 4,000 made the storm last about 1 s: too short to be stable
    idle_peers: int = 10000
    baseline_idle_peers: int = 2000
    idle_hold: float = 10.0
    churn_pairs: int = 100
    churn_s: float = 8.0
    # call set-up capacity: open loop, Poisson arrivals, calls_s seconds per rate, rising
    # in sqrt(2) steps until set-up p99 > 100 ms or a call fails (bench/callsweep.py)
    calls_rates: list[float] = field(default_factory=lambda: list(callsweep.RATES))
    baseline_calls_rates: list[float] = field(default_factory=lambda: [5, 7, 10, 14, 20, 28])
    calls_s: float = 4.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            relay_peers=100,
            relay_s=1.5,
            scaling_peers=[],
            open_pairs=50,
            open_rate=5.0,
            sweep_rates=[5, 50],
            open_s=1.5,
            connect_peers=200,
            idle_peers=200,
            baseline_idle_peers=100,
            idle_hold=1.0,
            churn_pairs=10,
            churn_s=1.5,
            calls_rates=[20, 40],
            baseline_calls_rates=[5, 10],
            calls_s=1.0,
        )


@dataclass
class Spec:
    name: str  # mcp-tornado 2w, before-2w (--also), channels baseline, picows reference
    kind: str  # mcp | baseline | reference
    command: str
    cwd: str | None = None
    workers: int = 0
    beside: str = ""  # an --also target: the mcp target it is measured with (mcp-tornado 2w)
    tls: bool = False  # started with {certfile}/{keyfile}, measured over wss://


#: Targets ``--skip`` knows.
SKIPPABLE = ("mcp", "baseline", "reference")
#: Runs ``--tests`` knows (relay_w1_N: the scaling runs, N peers).
COMPARE_TESTS = ("idle", "connect", "relay_w1", "relay_w8_2procs", "relay_w1_N", "openloop",
                 "churn", "calls")  # fmt: skip


def names_option(
    known: tuple[str, ...], what: str, required: bool = False
) -> Callable[[str], set[str]]:
    """An option's parser: a comma list of ``known`` names, each a ``what``; a typo (or,
    if ``required``, an empty list) is an error, not a run of several minutes."""

    def parse(text: str) -> set[str]:
        names = {s.strip() for s in text.split(",") if s.strip()}
        unknown = names - set(known)
        if unknown or (required and not names):
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(sorted(unknown)) or '(none)'} "
                f"(choose from {', '.join(known)})"
            )
        return names

    return parse


#: ``--tests``: a comma list of :data:`COMPARE_TESTS`.
tests_option = names_option(COMPARE_TESTS, "run", required=True)


def selected(test: str, tests: set[str] | None) -> bool:
    """Whether ``--tests`` asks for compare run ``test``."""
    if tests is None:
        return True
    return test in tests or (
        re.fullmatch(r"relay_w1_\d+", test) is not None and "relay_w1_N" in tests
    )


#: ``--skip``: a comma list of :data:`SKIPPABLE` names.
skip_option = names_option(SKIPPABLE, "target")


@dataclass(frozen=True)
class Also:
    """``--also NAME[@CWD]=COMMAND``: one more mcp-style server, per worker count."""

    name: str
    command: str
    cwd: str | None = None
    tls: bool = False  # COMMAND takes {certfile} and {keyfile}: measured over wss://


#: The placeholders of an --also COMMAND: always these, and for a TLS server these too.
_ALSO_FIELDS = {"workers", "port"}
_TLS_FIELDS = {"certfile", "keyfile"}


def also_option(text: str) -> Also:
    """Parse ``NAME=COMMAND`` or ``NAME@CWD=COMMAND``; COMMAND takes ``{workers}`` and
    ``{port}`` like ``--server-cmd`` (both are required: the bench must know where the
    server listens and what it is called), and for a TLS server ``{certfile}`` and
    ``{keyfile}``."""
    head, eq, command = text.partition("=")
    name, at, cwd = head.partition("@")
    name, cwd, command = name.strip(), cwd.strip(), command.strip()
    if not eq or not command:
        raise argparse.ArgumentTypeError(f"expected NAME=COMMAND or NAME@CWD=COMMAND: {text!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise argparse.ArgumentTypeError(f"NAME: letters, digits, '_', '.', '-' only: {name!r}")
    if at and not cwd:
        raise argparse.ArgumentTypeError(f"empty CWD after '@': {text!r}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(command) if f is not None}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"COMMAND: {exc}: {command!r}") from None
    optional = {"metrics_port"}
    if not (_ALSO_FIELDS <= fields <= _ALSO_FIELDS | optional | _TLS_FIELDS) or (
        fields & _TLS_FIELDS and not fields >= _TLS_FIELDS
    ):
        raise argparse.ArgumentTypeError(
            "COMMAND must use {workers} and {port}, may use {metrics_port} (and, for TLS, "
            f"both {{certfile}} and {{keyfile}}), and no other placeholder: {command!r}"
        )
    return Also(name, command, cwd or None, tls=fields >= _TLS_FIELDS)


def _has_modules(*names: str) -> bool:
    return all(importlib.util.find_spec(n) is not None for n in names)


def resolve_command(command: str) -> str | None:
    """Make the server command runnable: its program on PATH, beside this Python
    (an un-activated venv), or ``python -m mcp_tornado`` as a last resort."""
    program, _, rest = command.partition(" ")
    if program in ("python", "python3"):  # the bench's own Python (an un-activated venv's)
        return f"{sys.executable} {rest}"
    if shutil.which(program):
        return command
    beside = Path(sys.executable).parent / program
    if beside.is_file():
        return f"{beside} {rest}"
    if program == "mcp-tornado" and _has_modules("mcp_tornado"):
        return f"{sys.executable} -m mcp_tornado {rest}"
    return None


def plan_targets(args: argparse.Namespace, notes: list[str]) -> list[Spec]:
    skip: set[str] = args.skip
    also: list[Also] = args.also or []
    specs: list[Spec] = []
    command = None
    if "mcp" not in skip:
        command = resolve_command(args.server_cmd)
        if command is None:
            notes.append(f"mcp-tornado skipped: `{args.server_cmd.split()[0]}` is not installed.")
    for w in args.workers:
        main = f"mcp-tornado {w}w"
        if command is not None:
            specs.append(Spec(main, "mcp", command, workers=w))
        # Run as given (not resolved like --server-cmd: a bare `mcp-tornado` would be
        # this checkout's), in its own cwd: see README, "Before and after".
        for a in also:
            specs.append(Spec(f"{a.name}-{w}w", "mcp", a.command, a.cwd, w, beside=main, tls=a.tls))
    if "baseline" not in skip:
        folder = (
            Path(args.baseline_dir)
            if args.baseline_dir
            else REPO_ROOT.parent / "shared" / "baselines" / "channels_seed"
        )
        if not (folder / "mcp_server" / "asgi.py").is_file():
            notes.append(f"Channels baseline skipped: {folder} not found.")
        elif not _has_modules("django", "channels", "daphne"):
            notes.append(
                "Channels baseline skipped: django/channels/daphne not installed "
                "(`pip install django channels daphne`)."
            )
        else:
            specs.append(
                Spec(
                    "channels baseline",
                    "baseline",
                    f"{sys.executable} -m daphne -b 127.0.0.1 -p {{port}} "
                    "mcp_server.asgi:application",
                    cwd=str(folder),
                )
            )
    if "reference" not in skip:
        specs.append(
            Spec(
                "picows reference",
                "reference",
                f"{sys.executable} -m bench.reference_relay --host 127.0.0.1 --port {{port}}",
            )
        )
    return specs


Step = tuple[str, str, dict[str, Any]]  # compare test name, scenario, its parameters


def suite(spec: Spec, sz: Sizes) -> list[Step]:
    """The runs for one server, in order; smaller for the (slow) baseline."""
    steps: list[Step] = []

    def add(test: str, scenario: str, **params: Any) -> None:
        steps.append((test, scenario, params))

    slow = spec.kind == "baseline"
    st = 120.0 if slow else 30.0  # set-up timeout: the baseline needs minutes for 1,000 pairs
    # Idle first, on a fresh server: memory freed by earlier runs would otherwise be
    # reused by the new connections and hide their cost.
    if spec.kind != "mcp" or spec.workers == 2:
        idle_peers = sz.baseline_idle_peers if slow else sz.idle_peers
        add("idle", "idle", peers=idle_peers, procs=2, hold=sz.idle_hold, timeout=900.0)
    connect_peers = sz.relay_peers if slow else sz.connect_peers
    add("connect", "connect", peers=connect_peers, procs=2, setup_timeout=st)
    relay = {"messages": 10**9, "duration": sz.relay_s, "setup_timeout": st}
    add("relay_w1", "relay", peers=sz.relay_peers, procs=1, window=1, **relay)
    if not slow:
        add("relay_w8_2procs", "relay", peers=sz.relay_peers, procs=2, window=8, **relay)
    if spec.kind == "reference" or (spec.kind == "mcp" and spec.workers == 2):
        for peers in sz.scaling_peers:
            add(f"relay_w1_{peers}", "relay", peers=peers, procs=1, window=1, **relay)
    # The baseline's whole closed-loop capacity (~400 msg/s at 2,000 peers) is far below
    # the 5,000 msg/s offered here: an open loop would only measure its backlog.
    if not slow:
        rates = sorted({sz.open_rate, *sz.sweep_rates})
        add(
            "openloop",
            "openloop",
            pairs=sz.open_pairs,
            rates=rates,
            duration=sz.open_s,
            stop_p99_ms=50.0,
            setup_timeout=st,
        )
    add("churn", "churn", pairs=sz.churn_pairs, procs=1, duration=sz.churn_s)
    add(
        "calls",
        "calls_sweep",
        rates=sz.baseline_calls_rates if slow else sz.calls_rates,
        duration=sz.calls_s,
    )
    return steps


def groups(specs: list[Spec]) -> list[list[Spec]]:
    """Targets measured together: an mcp worker count with its --also targets (the same
    suite, so the same steps); every other target alone. In planning order."""
    out: dict[Any, list[Spec]] = {}
    for spec in specs:
        key = ("mcp", spec.workers) if spec.kind == "mcp" else spec.name
        out.setdefault(key, []).append(spec)
    return list(out.values())


def interleave(group: list[Spec], steps: list[Step]) -> list[tuple[Spec, Step]]:
    """Every step on every member of a group before the next step, in an order reversed
    at each step (A B, B A, A B ...): neither build is always the one measured first."""
    out: list[tuple[Spec, Step]] = []
    for i, step in enumerate(steps):
        out += [(spec, step) for spec in (group if i % 2 == 0 else group[::-1])]
    return out


def _get(runs: list[dict[str, Any]], target: str, test: str) -> dict[str, Any] | None:
    for run in runs:
        if run.get("compare_target") == target and run.get("compare_test") == test:
            return run
    return None


def _m(run: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = run.get("metrics") if run else None
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b or (isinstance(a, float) and math.isnan(a)):
        return None
    return float(a) / float(b)


def _errors(run: dict[str, Any] | None) -> int:
    if not run:
        return 0
    m = run.get("metrics", {})
    counts = {**m.get("setup_errors", {})}
    for key, value in m.get("errors", {}).items():
        counts[key] = counts.get(key, 0) + value
    counts.pop("room_full", None)  # churn's refusals have their own column
    return int(sum(counts.values()))


def cross_text(run: dict[str, Any] | None) -> str:
    """Where open-loop p99 crossed 50 ms; '> X' when the sweep never got there."""
    sweep = [s for s in (_m(run, "sweep") or []) if s.get("p99_ms") is not None]
    if not sweep:
        return "-"
    cross = _m(run, "p99_crosses_50ms_at_msgs_per_s")
    if cross is None:
        return f"> {report.fmt(max(s['offered_msgs_per_s'] for s in sweep))}"
    first = sweep[0]
    if cross <= first["offered_msgs_per_s"] and (first.get("p99_ms") or 0) >= 50:
        return f"<= {report.fmt(first['offered_msgs_per_s'])}"
    return report.fmt(cross)


def valid(run: dict[str, Any] | None, share: float = 0.9) -> bool:
    """A relay/open-loop run whose pairs were (mostly) all ready, so its rate means something."""
    if not run:
        return False
    wanted = int(run.get("params", {}).get("pairs", 0))
    return wanted > 0 and int(_m(run, "ready_pairs") or 0) >= share * wanted


def rate_text(run: dict[str, Any] | None) -> str:
    """Deliveries/s, flagged with the ready pairs when too few pairs got going."""
    if not run:
        return "-"
    text = report.fmt(_m(run, "deliveries_per_s"))
    if not valid(run):
        text += f" ({ready_text(run)})"
    return text


def ready_text(run: dict[str, Any] | None) -> str:
    if not run:
        return "not run"
    return f"{_m(run, 'ready_pairs') or 0} of {run.get('params', {}).get('pairs')} pairs ready"


def _cpu_split(run: dict[str, Any] | None) -> str:
    server = (run or {}).get("server") or {}
    labels = server.get("cpu_pct_by_label") or {}
    if not labels:
        return "-"
    return ", ".join(f"{k} {v:.0f}%" for k, v in labels.items())


#: The figures set side by side for an --also target: (figure, test, metric, higher is better).
BESIDE_FIGURES = (
    ("relay w1 deliveries/s", "relay_w1", "deliveries_per_s", True),
    ("relay w8 2 procs deliveries/s", "relay_w8_2procs", "deliveries_per_s", True),
    ("connect storm joins/s", "connect", "joins_per_s", True),
    ("idle server KiB per peer", "idle", "server_kib_per_peer", False),
)


def beside_rows(runs: list[dict[str, Any]], specs: list[Spec]) -> list[list[str]]:
    """Per --also target and figure of :data:`BESIDE_FIGURES`: the mcp target it ran
    beside, itself, the ratio and the change in percent (+ is better: more deliveries or
    joins, fewer KiB); a relay that had too few pairs ready gives no ratio."""
    f = report.fmt
    rows = []
    for spec in specs:
        if not spec.beside:
            continue
        for figure, test, metric, higher in BESIDE_FIGURES:
            ours, other = _get(runs, spec.beside, test), _get(runs, spec.name, test)
            if ours is None and other is None:
                continue
            ratio = _ratio(_m(ours, metric), _m(other, metric))
            if test.startswith("relay") and not (valid(ours) and valid(other)):
                ratio = None
            change = "-"
            if ratio:
                change = f"{100.0 * ((ratio if higher else 1.0 / ratio) - 1.0):+.1f}%"
            rows.append(
                [
                    figure,
                    spec.beside,
                    f(_m(ours, metric), 2),
                    spec.name,
                    f(_m(other, metric), 2),
                    f(ratio, 3),
                    change,
                ]
            )
    return rows


Run = dict[str, Any] | None  # one run of compare.json, or None where it did not run
MCP2 = "mcp-tornado 2w"
REFERENCE = "picows reference"


def _capacity(run: Run, figure: str) -> float | None:
    """A capacity for a ratio: the calls/s of a call sweep, the msg/s where open-loop p99
    crossed 50 ms. A sweep that never got there counts its highest rate, one that failed
    at its first rate that rate: bounds, which :func:`_bound` tells apart."""
    sweep = [s for s in _m(run, "sweep") or [] if isinstance(s, dict)]
    if figure == "calls":
        if not sweep:
            return None
        cap = _m(run, "capacity_calls_per_s")
        return float(sweep[0]["offered_calls_per_s"] if cap is None else cap)
    sweep = [s for s in sweep if s.get("p99_ms") is not None]
    if not sweep:
        return None
    cross = _m(run, "p99_crosses_50ms_at_msgs_per_s")
    if cross is None:
        return float(max(s["offered_msgs_per_s"] for s in sweep))
    return float(cross)


def _bound(run: Run, figure: str) -> int:
    """Whether a sweep's :func:`_capacity` is exact (0), only a lower bound (+1: it never
    reached its limit) or an upper bound (-1: it was past its limit at the first rate)."""
    sweep = [s for s in _m(run, "sweep") or [] if isinstance(s, dict)]
    if not sweep:
        return 0
    if figure == "calls":
        if _m(run, "capacity_calls_per_s") is None:
            return -1
        return 0 if _m(run, "capacity_reached") else 1
    text = cross_text(run)
    return 1 if text.startswith(">") else -1 if text.startswith("<=") else 0


def _open_p99(run: dict[str, Any] | None) -> float | None:
    """Open-loop p99 at the first rate (1,000 pairs x 5 msg/s)."""
    steps = (run or {}).get("steps") or []
    return steps[0]["metrics"]["latency_ms"]["p99"] if steps else None


def _lost(run: dict[str, Any] | None) -> int:
    """Messages lost, reordered or duplicated in a run, and calls lost (``lost_message``:
    both sockets open, something sent never arrived) in any step of a call sweep."""
    if not run:
        return 0
    total = sum(int(_m(run, key) or 0) for key in ("lost", "reordered", "duplicates"))
    for line in _m(run, "sweep") or []:
        if isinstance(line, dict):
            total += int((line.get("failures") or {}).get("lost_message", 0))
    return total


def target_rows(runs: list[dict[str, Any]], ours: str, ref: str) -> list[list[str]]:
    """Issue 17's goals for target ``ours`` against ``ref``: figure, measured (the ratio and
    both values), goal, met / NOT met ("-" when a run is missing)."""
    f = report.fmt
    rows: list[list[str]] = []

    def row(figure: str, value: float | None, shown: str, goal: str, ok: bool | None) -> None:
        verdict = "-" if value is None or ok is None else ("met" if ok else "NOT met")
        rows.append([f"{figure} ({ours})", shown, goal, verdict])

    def ratio(
        figure: str,
        test: str,
        get: Callable[[Run], Any],
        goal: float,
        text: Callable[[Run], str],
        bound: Callable[[Run], int] | None = None,
    ) -> None:
        a, b = _get(runs, ours, test), _get(runs, ref, test)
        r = _ratio(get(a), get(b))
        relay = test.startswith("relay") and a is not None and b is not None
        if relay and not (valid(a) and valid(b)):
            r = None
        # +1: the true ratio is at least r (ours a lower bound, or theirs an upper one);
        # -1: at most r; 0: exact. Bounds pulling both ways leave nothing to judge.
        pulls = {bound(a), -bound(b)} - {0} if bound is not None else set()
        way = pulls.pop() if len(pulls) == 1 else 0
        bound_text = ">= " if way > 0 else "<= " if way < 0 else "~" if pulls else ""
        shown = "-" if r is None else f"{bound_text}{f(r, 2)}x ({text(a)} vs {text(b)})"
        ok = None if r is None else r >= goal
        if (way > 0 and ok is False) or (way < 0 and ok) or len(pulls) > 1:
            ok = None  # only a bound, on the side that does not decide
        row(figure, r, shown, f">= {goal:g}x", ok)

    ratio(
        "call set-ups/s, p99 <= 100 ms, 0 failed / reference",
        "calls",
        lambda r: _capacity(r, "calls"),
        1.0,
        callsweep.capacity_text,
        lambda r: _bound(r, "calls"),
    )
    ratio(
        "open-loop capacity (p99 crosses 50 ms), msg/s / reference",
        "openloop",
        lambda r: _capacity(r, "openloop"),
        1.0,
        cross_text,
        lambda r: _bound(r, "openloop"),
    )
    a, b = _open_p99(_get(runs, ours, "openloop")), _open_p99(_get(runs, ref, "openloop"))
    r = _ratio(a, b)
    row(
        "open-loop p99 at 1,000 pairs x 5 msg/s / reference",
        r,
        "-" if r is None else f"{f(r, 2)}x ({f(a, 2)} vs {f(b, 2)} ms)",
        "<= 1.2x",
        None if r is None else r <= 1.2,
    )
    ratio(
        "connect storm joins/s / reference",
        "connect",
        lambda r: _m(r, "joins_per_s"),
        1.0,
        lambda r: f(_m(r, "joins_per_s")),
    )
    ratio(
        "relay w8 2 procs deliveries/s / reference",
        "relay_w8_2procs",
        lambda r: _m(r, "deliveries_per_s"),
        1.2,
        rate_text,
    )
    kib = _m(_get(runs, ours, "idle"), "server_kib_per_peer")
    row(
        "idle server KiB per peer",
        kib,
        f(kib, 2),
        "<= 2.5 KiB",
        None if kib is None else kib <= 2.5,
    )
    mine = [r for r in runs if r.get("compare_target") == ours]
    lost = sum(_lost(r) for r in mine)
    row(
        "lost + reordered + duplicated, every run",
        float(lost) if mine else None,
        f(lost),
        "0",
        lost == 0,
    )
    return rows


def markdown(
    runs: list[dict[str, Any]],
    specs: list[Spec],
    notes: list[str],
    wall: float,
    machine: dict[str, Any] | None = None,
) -> str:
    f = report.fmt
    names = [s.name for s in specs]
    out = [
        "### Results",
        "",
        report.machine_markdown(machine),
        "Generated by `python -m bench compare`"
        + (
            f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {wall / 60:.1f} min."
            if not math.isnan(wall)
            else " (re-rendered from its JSON by `python -m bench report`)."
        ),
        "",
    ]
    rows = []
    for name in names:
        r1 = _get(runs, name, "relay_w1")
        r8 = _get(runs, name, "relay_w8_2procs")
        ol = _get(runs, name, "openloop")
        cn = _get(runs, name, "connect")
        idle = _get(runs, name, "idle")
        ch = _get(runs, name, "churn")
        ca = _get(runs, name, "calls")
        lost = sum(
            int(_m(r, "lost") or 0) + int(_m(r, "reordered") or 0) for r in (r1, r8, ol) if r
        )
        rows.append(
            [
                name,
                rate_text(r1),
                f(_m(r1, "latency_ms", "p99"), 2),
                rate_text(r8),
                f(_m(r8, "latency_ms", "p99"), 2),
                f(
                    (ol or {})
                    .get("steps", [{}])[0]
                    .get("metrics", {})
                    .get("latency_ms", {})
                    .get("p99")
                    if ol
                    else None,
                    2,
                ),
                cross_text(ol),
                f(_m(cn, "joins_per_s")),
                f(_m(idle, "server_kib_per_peer"), 1)
                + (f" ({f(_m(idle, 'held'))})" if idle else ""),
                f(_m(ch, "cycles_per_s")),
                f"{_m(ch, 'room_full_first_join') or 0}/{_m(ch, 'room_full_on_rejoin') or 0}"
                if ch
                else "-",
                callsweep.capacity_text(ca),
                "/".join(f(_m(ca, "setup_ms", q), 1) for q in ("p50", "p90", "p99")) if ca else "-",
                _m(ca, "stop") or ("not reached" if ca else "-"),
                str(lost),
                str(sum(_errors(r) for r in (r1, r8, ol, cn, idle, ch, ca))),
            ]
        )
    out.append(
        report.markdown_table(
            [
                "server",
                "relay w1 deliv/s",
                "w1 p99 ms",
                "relay w8 2 procs deliv/s",
                "w8 p99 ms",
                "open loop p99 ms",
                "p99 > 50 ms at msg/s",
                "joins/s",
                "idle KiB/peer (peers)",
                "churn cycles/s",
                "room_full 1st/rejoin",
                "call set-ups/s (p99 <= 100 ms, 0 failed)",
                "set-up ms p50/p90/p99 there",
                "call sweep stopped",
                "lost+reordered",
                "errors",
            ],
            rows,
        )
    )
    # CPU split per server process kind during relay w8 (router vs workers).
    cpu_rows = []
    for name in names:
        for test in ("relay_w1", "relay_w8_2procs"):
            run = _get(runs, name, test)
            if run is None:
                continue
            cpu_rows.append(
                [
                    name,
                    test,
                    f((run.get("server") or {}).get("cpu_pct")),
                    _cpu_split(run),
                    f((run.get("client") or {}).get("cpu_pct")),
                ]
            )
    out += [
        "",
        "Server CPU by process during the relay runs (percent of one core; labels from each "
        "process's command line) and the load client's own CPU:",
        "",
        report.markdown_table(
            ["server", "run", "server CPU %", "by process", "client CPU %"], cpu_rows
        ),
    ]
    # Targets of issue 17: the 2-worker server (and its --also builds) against the reference.
    t_rows = []
    for name in [MCP2, *(s.name for s in specs if s.beside == MCP2)]:
        if name in names:
            t_rows += target_rows(runs, name, REFERENCE)
    if t_rows:
        out += [
            "",
            "Targets of issue 17 (2 workers against the picows reference relay, same run; "
            "reported, not asserted):",
            "",
            report.markdown_table(["figure", "measured", "target", ""], t_rows),
        ]
    beside = beside_rows(runs, specs)
    if beside:
        out += [
            "",
            "Beside the --also targets (measured in the same run, interleaved run by run; "
            "ratio = this checkout / the other, change: + is better):",
            "",
            report.markdown_table(
                ["figure", "this checkout", "value", "other", "value", "ratio", "change"], beside
            ),
        ]
    notes = [
        *notes,
        "The Channels baseline runs a smaller set: no window-8 relay and no open loop "
        "(its closed-loop capacity is far below the 5,000 msg/s offered), 2,000 peers "
        "for the connect storm and idle hold.",
    ]
    if notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def log_path(out_dir: Path, spec: Spec) -> Path:
    return out_dir / "logs" / f"{spec.name.replace(' ', '_')}.log"


def tls_files(out_dir: Path, trust: bool) -> dict[str, str]:
    """A throwaway CA and a certificate for 127.0.0.1 in ``out_dir/tls``, for TLS targets:
    the ``{certfile}`` and ``{keyfile}`` of their commands; with ``trust``, the load
    client (and its processes) trusts that CA."""
    import trustme  # in the test extras, like everything the bench needs

    folder = out_dir / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    keyfile.write_bytes(leaf.private_key_pem.bytes())
    keyfile.chmod(0o600)
    ca.cert_pem.write_to_path(str(cafile))
    if trust:
        set_tls_trust(str(cafile))
    return {"certfile": str(certfile), "keyfile": str(keyfile)}


def start(
    spec: Spec, out_dir: Path, stack: contextlib.ExitStack, tls: dict[str, str] | None = None
) -> tuple[SpawnedServer, str | None]:
    """Start one target on a free port; ``stack`` stops it (and drops its temp dir).

    Also returns its /metrics URL when its command takes ``{metrics_port}``."""
    port = free_port()
    scheme = "wss" if spec.tls else "ws"
    url = f"{scheme}://127.0.0.1:{port}/ws/signal/"
    metrics_port = free_port() if "{metrics_port}" in spec.command else None
    command = spec.command.format(
        port=port, workers=spec.workers, metrics_port=metrics_port, **(tls or {})
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None
    cwd = spec.cwd
    if spec.kind == "baseline" and cwd is not None:
        copy = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-baseline-")))
        shutil.copytree(cwd, copy / "channels_seed")
        cwd = str(copy / "channels_seed")
    elif spec.beside and cwd is None:
        # Not the bench's cwd: the server's processes run `python -m mcp_tornado`, and an
        # mcp_tornado/ folder in their cwd (this checkout's) would be imported instead.
        cwd = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-also-"))
    log = log_path(out_dir, spec)
    server = SpawnedServer(command, url, cwd=cwd, log_path=log)
    print(f"== {spec.name}: {command}" + (f" (in {cwd})" if cwd else ""), file=sys.stderr)
    stack.callback(server.stop)
    return server.start(timeout=60), metrics_url


def run_step(
    scenario: str, target: drivers.Target, progress: bool, params: dict[str, Any]
) -> dict[str, Any]:
    """One step of a suite: a scenario of bench/drivers.py, or the call set-up sweep."""
    if scenario == "calls_sweep":
        return callsweep.sweep(target, progress=progress, **params)
    return drivers.run(scenario, target, progress=progress, **params)


def main(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    specs = plan_targets(args, notes)
    tls = None
    if any(spec.tls for spec in specs):
        tls = tls_files(out_dir, trust=not (args.ca or args.insecure))
    sz = Sizes.quick() if args.quick else Sizes()
    progress = not args.no_progress
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    done_specs: list[Spec] = []
    for group in groups(specs):
        # The members of a group (an mcp target and its --also targets) run at the same
        # time, each idle while another is measured, so one step follows the other.
        with contextlib.ExitStack() as stack:
            live: dict[str, SpawnedServer] = {}
            metrics: dict[str, str | None] = {}
            for spec in group:
                try:
                    live[spec.name], metrics[spec.name] = start(
                        spec, out_dir, stack, tls if spec.tls else None
                    )
                except Exception as exc:  # one broken target must not sink the rest
                    notes.append(
                        f"{spec.name} failed to start: {type(exc).__name__}: {exc} "
                        f"(log: {log_path(out_dir, spec)})"
                    )
            time.sleep(1.0)  # let every worker finish starting
            members = [spec for spec in group if spec.name in live]
            steps = [step for step in suite(group[0], sz) if selected(step[0], args.tests)]
            for spec, (test, scenario, params) in interleave(members, steps):
                server = live.get(spec.name)
                if server is None:
                    continue  # failed at an earlier step
                target = drivers.Target(
                    url=server.url,
                    label=spec.name,
                    server_pid=server.pid,
                    metrics_url=metrics.get(spec.name),
                )
                try:
                    run = run_step(scenario, target, progress, params)
                except Exception as exc:
                    notes.append(
                        f"{spec.name} failed: {type(exc).__name__}: {exc} "
                        f"(log: {log_path(out_dir, spec)})"
                    )
                    live.pop(spec.name).stop()
                    continue
                run["compare_target"] = spec.name
                run["compare_test"] = test
                if spec.beside:
                    run["compare_beside"] = spec.beside
                runs.append(run)
                report.print_summary([run])
            done_specs += [spec for spec in members if spec.name in live]
            for spec in members:
                if spec.beside and spec.name in live:
                    notes.append(
                        f"{spec.name} ran beside {spec.beside}, interleaved run by run: "
                        f"`{spec.command}`" + (f" in `{spec.cwd}`" if spec.cwd else "")
                    )
    wall = time.monotonic() - started
    json_path = report.write_json(out_dir / "compare.json", runs)
    md = markdown(runs, done_specs, notes, wall)
    md_path = out_dir / "compare.md"
    md_path.write_text(md)
    print(md)
    print(f"results: {json_path}\nmarkdown: {md_path}")
    for path in make_plots(runs, out_dir):
        print(f"plot: {path}")
    return 0


def report_from_file(path: str | Path, plot_dir: str | Path | None = None) -> str:
    """Re-render compare.md (and, with ``plot_dir``, the plots) from a compare.json."""
    doc = report.read_json(path)
    runs: list[dict[str, Any]] = doc["runs"]
    names: list[str] = []
    for run in runs:
        name = run.get("compare_target")
        if isinstance(name, str) and name not in names:
            names.append(name)
    beside = {r["compare_target"]: r["compare_beside"] for r in runs if "compare_beside" in r}
    specs = [Spec(name, "", "", beside=beside.get(name, "")) for name in names]
    if plot_dir is not None:
        make_plots(runs, Path(plot_dir))
    return markdown(runs, specs, [], wall=math.nan, machine=doc.get("machine"))


def make_plots(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    def pick(*tests: str) -> list[dict[str, Any]]:
        return [r for r in runs if any(str(r.get("compare_test", "")).startswith(t) for t in tests)]

    made = [
        plots.latency_cdf(
            pick("relay_w1"), out_dir / "compare_relay_w1_cdf.png", "Relay, window 1: RTT CDF"
        ),
        plots.latency_cdf(
            pick("relay_w8"),
            out_dir / "compare_relay_w8_cdf.png",
            "Relay, window 8, 2 client procs: RTT CDF",
        ),
        plots.scaling(
            pick("relay_w1"),
            out_dir / "compare_scaling.png",
            "Relay window 1: throughput and p99 vs peers",
        ),
        plots.comparison(
            [r for r in runs if r.get("compare_test") in ("relay_w1", "relay_w8_2procs")],
            out_dir / "compare_relay.png",
            "Relay throughput and p99 by server",
        ),
        plots.sweep(pick("openloop"), out_dir / "compare_openloop_sweep.png"),
        plots.calls_sweep(pick("calls"), out_dir / "compare_calls_sweep.png"),
    ]
    return [p for p in made if p is not None]
