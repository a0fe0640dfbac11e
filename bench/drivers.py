"""Main-process side of the scenarios: run the workers, turn their raw data into a result.

``SCENARIOS`` is the one table of scenarios: per name, its worker coroutine
(bench/scenarios.py), its parameters with their defaults (and which of them are
command-line options), the name of each phase (one per barrier) and how the
workers' raw results become metrics. ``run()`` does the rest for all of them, and
``python -m bench`` builds its subcommands from the same table.

``run()`` returns one JSON-ready *run* dict::

    {"scenario": ..., "label": ..., "url": ..., "params": {...},
     "metrics": {...}, "server": {...} | None, "client": {...}, "cdf": [[ms, frac], ...]}
"""

from __future__ import annotations

import functools
import math
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import scenarios, servercounts
from bench.procmon import ProcTree, TreeSnapshot, cpu_between
from bench.progress import Progress
from bench.runner import RunOutput, WorkerFn, run_workers
from bench.stats import cdf_points, crossing_point, merge_counts, summarize


@dataclass
class Target:
    """A server under test: where to connect, what to call it, which pid to sample."""

    url: str
    label: str
    server_pid: int | list[int] | None = None  # several: processes on several (emulated) hosts
    metrics_url: str | None = None  # the server's Prometheus /metrics: its counts are checked

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


def _setup_errors(out: RunOutput) -> dict[str, int]:
    infos = out.barrier_infos[0] if out.barrier_infos else []
    return _counter_sum(infos, "errors")


def _relay_metrics(payloads: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Any]]:
    """Metrics and latency CDF of one closed- or open-loop measuring phase."""
    span = _span_s(payloads)
    rtts = _ns_values(payloads, "rtt_ns")
    latency = summarize(rtts)
    loss = _counter_sum(payloads, "loss")
    deliveries = sum(p["deliveries"] for p in payloads)
    metrics = {
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
    return metrics, [list(p) for p in cdf_points(rtts)]


# ------------------------------------------------------------------ summaries
# Each turns a RunOutput into the run's "metrics" (and "cdf", "steps" ...); "server"
# and "client" are the first phase's unless the summary sets them.


def _relay(out: RunOutput, params: dict[str, Any]) -> dict[str, Any]:
    metrics, cdf = _relay_metrics(out.results[0])
    metrics["setup_errors"] = _setup_errors(out)
    return {"metrics": metrics, "cdf": cdf}


def _openloop(out: RunOutput, params: dict[str, Any]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for k, rate in enumerate(params["rates"]):
        payloads = out.results[k]
        if not payloads:
            continue
        metrics, cdf = _relay_metrics(payloads)
        metrics["rate_per_pair"] = rate
        metrics["offered_msgs_per_s"] = rate * params["pairs"]
        server, client = _phase(out, k, k + 1)
        steps.append({"metrics": metrics, "server": server, "client": client, "cdf": cdf})
    offered = [s["metrics"]["offered_msgs_per_s"] for s in steps]
    p99s = [s["metrics"]["latency_ms"]["p99"] for s in steps]
    empty: dict[str, Any] = {"metrics": {}, "server": None, "client": None, "cdf": []}
    first = steps[0] if steps else empty
    metrics = dict(first["metrics"])
    metrics["setup_errors"] = _setup_errors(out)
    metrics["sweep"] = [
        {"offered_msgs_per_s": o, "p99_ms": p} for o, p in zip(offered, p99s, strict=True)
    ]
    metrics["p99_crosses_50ms_at_msgs_per_s"] = crossing_point(offered, p99s, 50.0)
    return {
        "steps": steps,
        "metrics": metrics,
        "server": first["server"],
        "client": first["client"],
        "cdf": first["cdf"],
    }


def _openloop_stop(params: dict[str, Any], k: int, out: RunOutput) -> bool:
    """Stop a rate sweep once p99 is well past the limit: the next rate only hurts more."""
    # Every worker sends step k-1's result before arriving at barrier k.
    stop_p99_ms = params["stop_p99_ms"]
    if k == 0 or stop_p99_ms is None or k > len(params["rates"]):
        return False
    payloads = out.results[k - 1]
    if not payloads:
        return False
    p99 = float(summarize(_ns_values(payloads, "rtt_ns"))["p99"])
    return p99 == p99 and p99 > stop_p99_ms * 2


def _churn(out: RunOutput, params: dict[str, Any]) -> dict[str, Any]:
    payloads = out.results[0]
    span = _span_s(payloads)
    counts = _counter_sum(payloads, "counts")
    cycles = _ns_values(payloads, "cycle_ns")
    metrics = {
        "cycles": counts.get("cycles", 0),
        "cycles_per_s": counts.get("cycles", 0) / span,
        "joins_per_s": 2 * counts.get("cycles", 0) / span,
        "room_full_first_join": counts.get("room_full_first_join", 0),
        "room_full_on_rejoin": counts.get("room_full_on_rejoin", 0),
        "handshake_timeouts": counts.get("handshake_timeout", 0),
        "cycle_ms": summarize(cycles),
        "errors": _counter_sum(payloads, "errors"),
        "events": _counter_sum(payloads, "events"),
    }
    return {"metrics": metrics, "cdf": [list(p) for p in cdf_points(cycles)]}


def _calls(out: RunOutput, params: dict[str, Any]) -> dict[str, Any]:
    payloads = out.results[0]
    counts = _counter_sum(payloads, "counts")
    setup = _ns_values(payloads, "setup_ns")
    calls = sum(int(p.get("calls", 0)) for p in payloads)
    complete = counts.pop("complete", 0)
    start = min((int(p["start_ns"]) for p in payloads), default=0)
    last = max((int(p.get("last_setup_ns", 0)) for p in payloads), default=0)
    span = max(1e-9, (last - start) / 1e9) if last > start else math.nan
    metrics = {
        "calls": calls,
        "offered_calls_per_s": params["rate"],
        "set_up": complete,
        "failed": calls - complete,
        # set-up calls per second, from the first call's start to the last one set up
        "calls_per_s": complete / span if complete else 0.0,
        "setup_ms": summarize(setup),
        "failures": counts,  # per kind: no_peer, room_full, lost_message, connect_refused ...
        "errors": _counter_sum(payloads, "errors"),
    }
    return {"metrics": metrics, "cdf": [list(p) for p in cdf_points(setup)]}


def _connect(out: RunOutput, params: dict[str, Any]) -> dict[str, Any]:
    payloads = out.results[0]
    span = _span_s(payloads)
    joined = sum(p["joined"] for p in payloads)
    latencies = _ns_values(payloads, "connect_ns")
    metrics = {
        "joined": joined,
        "joins_per_s": joined / span,
        "time_to_all_joined_s": span,
        "connect_ms": summarize(latencies),
        "errors": _counter_sum(payloads, "errors"),
        "events": _counter_sum(payloads, "events"),
    }
    return {"metrics": metrics, "cdf": [list(p) for p in cdf_points(latencies)]}


def _idle(out: RunOutput, params: dict[str, Any]) -> dict[str, Any]:
    payloads = out.results[0]
    held = sum(info.get("held", 0) for info in (out.barrier_infos[1] if out.barrier_infos else []))
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
    server, client = _phase(out, 1, 2)  # the hold, not the connecting
    cdf = [list(p) for p in cdf_points(_ns_values(payloads, "connect_ns"))]
    return {"metrics": metrics, "server": server, "client": client, "cdf": cdf}


# ------------------------------------------------------------------ the table
URL_B_HELP = (
    "B's endpoint when it must not be --url's, e.g. another worker's port "
    "(with serve --workers N on one port the kernel picks the worker); empty: --url"
)


@dataclass(frozen=True)
class Scenario:
    """One scenario. ``params``: every parameter with its default, in the order results
    list them (``pairs`` and ``peers`` = 2 x pairs are always there). ``options``: the
    parameters that are command-line options, with their help (``--peers`` takes a
    comma list: one run per value)."""

    help: str
    worker: WorkerFn
    params: dict[str, Any]
    options: dict[str, str]
    phases: Callable[[dict[str, Any]], list[str]]  # one name per barrier
    summarise: Callable[[RunOutput, dict[str, Any]], dict[str, Any]]
    stop: Callable[[dict[str, Any], int, RunOutput], bool] | None = None  # abort what is left


SCENARIOS: dict[str, Scenario] = {
    "relay": Scenario(
        "closed-loop relay: throughput and round-trip latency",
        scenarios.relay_worker,
        params={
            "pairs": 1000,
            "peers": 2000,
            "procs": 1,
            "window": 1,
            "messages": 1_000_000,
            "duration": 10.0,
            "concurrency": 200,
            "setup_timeout": 30.0,
            "drain_timeout": 5.0,
            "url_b": "",
        },
        options={
            "peers": "peers, comma list (sweep)",
            "window": "messages in flight per pair",
            "messages": "max messages per pair",
            "duration": "seconds of sending",
            "concurrency": "connects in flight per proc",
            "url_b": URL_B_HELP,
        },
        phases=lambda p: ["measure", "closing"],
        summarise=_relay,
    ),
    "openloop": Scenario(
        "open loop at a fixed rate per pair (or a sweep)",
        scenarios.openloop_worker,
        params={
            "pairs": 1000,
            "peers": 2000,
            "procs": 1,
            "rates": [5.0],
            "duration": 10.0,
            "stop_p99_ms": 50.0,
            "concurrency": 200,
            "setup_timeout": 30.0,
            "drain_timeout": 5.0,
            "url_b": "",
        },
        options={
            "pairs": "pairs of peers",
            "rates": "msg/s per pair, comma list",
            "duration": "seconds per rate",
            "stop_p99_ms": "stop a sweep once p99 > 2x this (ms)",
            "concurrency": "connects in flight per proc",
            "url_b": URL_B_HELP,
        },
        phases=lambda p: [f"{r:g}/s" for r in p["rates"]] + ["closing"],
        summarise=_openloop,
        stop=_openloop_stop,
    ),
    "churn": Scenario(
        "pairs join, exchange, leave and rejoin",
        scenarios.churn_worker,
        params={
            "pairs": 100,
            "peers": 200,
            "procs": 1,
            "duration": 10.0,
            "rejoin_delay": 0.0,
            "setup_timeout": 10.0,
        },
        options={
            "pairs": "pairs of peers",
            "duration": "seconds of churning",
            "rejoin_delay": "pause before a rejoin, s",
        },
        phases=lambda p: ["churn", "done"],
        summarise=_churn,
    ),
    "calls": Scenario(
        "call set-up, open loop: A joins a fresh room, B joins and at once sends its offer "
        "and 8 candidates, A answers; set-up time percentiles and failed calls by kind",
        scenarios.calls_worker,
        params={
            "pairs": 500,  # = calls: rate x duration (set by run_params)
            "peers": 1000,
            "procs": 1,
            "rate": 100.0,
            "duration": 5.0,
            "call_timeout": 5.0,
            "arrivals": "poisson",
            "url_b": "",
        },
        options={
            "rate": "calls started per second (all client processes together)",
            "duration": "seconds of starting calls",
            "call_timeout": "seconds a call may take to be set up (else it failed)",
            "arrivals": "when calls start: poisson (random gaps averaging 1/rate) or even",
            "url_b": URL_B_HELP,
        },
        phases=lambda p: ["calls", "closing"],
        summarise=_calls,
    ),
    "connect": Scenario(
        "connect storm: joins/s and time to all joined",
        scenarios.connect_worker,
        params={
            "peers": 2000,
            "pairs": 1000,
            "procs": 1,
            "concurrency": 64,
            "wait_joined": 0.0,
            "setup_timeout": 30.0,
        },
        options={
            "peers": "peers, comma list (one storm per value)",
            "concurrency": "connects in flight per proc "
            "(keep procs x this under the server listen backlog)",
            "wait_joined": "also wait up to this many s for a 'joined' event "
            "(servers that send one)",
        },
        phases=lambda p: ["connect", "closing"],
        summarise=_connect,
    ),
    "idle": Scenario(
        "hold N idle peers with pings; server memory per peer",
        scenarios.idle_worker,
        params={
            "peers": 10000,
            "pairs": 5000,
            "procs": 1,
            "hold": 20.0,
            "ping_interval": 5.0,
            "settle": 2.0,
            "concurrency": 64,
            "setup_timeout": 30.0,
        },
        options={
            "peers": "peers, comma list (one run per value)",
            "hold": "seconds to hold",
            "ping_interval": "seconds between two pings of a peer",
            "concurrency": "connects in flight per proc",
        },
        phases=lambda p: ["connect", "hold", "closing"],
        summarise=_idle,
    ),
}


def run_params(scenario: str, **given: Any) -> dict[str, Any]:
    """``given`` over the scenario's defaults; ``peers`` sets ``pairs`` to peers // 2."""
    defaults = SCENARIOS[scenario].params
    unknown = set(given) - set(defaults)
    if unknown:
        raise TypeError(f"{scenario}: unknown parameters {sorted(unknown)}")
    if "peers" in given:
        given["pairs"] = given["peers"] // 2
    params = {**defaults, **given}
    if scenario == "calls":  # one "pair" per call: the runner splits them over --procs
        params["pairs"] = max(int(params["procs"]), round(params["rate"] * params["duration"]))
    params["peers"] = 2 * params["pairs"]
    return params


def run(
    scenario: str, target: Target, progress: bool = True, timeout: float = 600.0, **given: Any
) -> dict[str, Any]:
    """One run of ``scenario`` against ``target`` (``given``: see run_params)."""
    spec = SCENARIOS[scenario]
    params = run_params(scenario, **given)
    result: dict[str, Any] = {
        "scenario": scenario,
        "label": target.label,
        "url": target.url,
        "params": params,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    timed = "duration" in params  # else the progress line counts peers
    bar = Progress(
        f"{scenario}[{target.label}]",
        total=None if timed else params["peers"],
        duration=params.get("duration"),
        enabled=progress,
    )
    phases = spec.phases(params)
    before = servercounts.quiet(target.metrics_url) if target.metrics_url else None
    out = run_workers(
        spec.worker,
        target.url,
        params["pairs"],
        params["procs"],
        params,
        n_barriers=len(phases),
        server=target.tree(),
        timeout=timeout,
        progress=bar,
        on_barrier=functools.partial(spec.stop, params) if spec.stop else None,
        phase_names=phases,
    )
    result.update(spec.summarise(out, params))
    if "server" not in result:
        result["server"], result["client"] = _phase(out, 0, 1)
    result["failures"] = out.errors
    result["wall_s"] = out.wall_s
    if target.metrics_url and before is not None:
        after = servercounts.settled(target.metrics_url, before, out.tally)
        result["server_counts"] = servercounts.compare(before, after, out.tally)
    return result
