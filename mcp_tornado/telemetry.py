"""Metrics, worker side: plain integer counters, reported to the router as deltas.

Usage (in a worker)::

    from mcp_tornado.telemetry import counters
    counters.rate_limited += 1                 # anywhere, on the hot path too
    counters.relayed[kind * 2 + LOCAL] += 1     # labelled counters are lists or dicts

    stats = counters.report(gauges)             # once per heartbeat: a wire.Stats of deltas

Each worker process has one :data:`counters` object: slotted attributes,
lists indexed by a label's position, and fixed-bucket histograms whose
buckets are a list of ints.  Counting costs an integer increment, never an
allocation, a lock or a library call.  Once per heartbeat the router link asks
:meth:`WorkerCounters.report` for a :class:`~mcp_tornado.wire.Stats` holding
what changed since the previous report (counter and bucket *deltas*) and the
current gauges; the router (:mod:`mcp_tornado.router.telemetry`) adds the
deltas of every worker, on every host, into the deployment's totals and
serves them to Prometheus.  Deltas are why the totals stay right when
processes restart: a worker that dies loses at most its last heartbeat's
worth, a restarted one starts reporting from zero without anything counted
twice, and a restarted router starts its totals from zero (a counter reset,
which Prometheus expects).

The tables below (:data:`COUNTERS`, :data:`HISTOGRAMS`, :data:`GAUGES`) are
the one definition of what a worker reports: the keys it sends and the
families, help texts and labels the router exports them as.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Final, NamedTuple

from mcp_tornado import protocol, wire
from mcp_tornado.supervisor import GENERATION_ENV, SLOT_ENV

# --- labels ---------------------------------------------------------------------

#: What ``protocol.check_client_frame`` says a relayed frame is (its index is the kind).
KINDS: Final = protocol.RELAYED_KINDS
LOCAL: Final = 0  # relayed by the worker itself, to a partner on the same worker
ROUTED: Final = 1  # relayed through the router
PATHS: Final = ("local", "router")

#: Why an upgrade (or a connection) was refused before the client joined a room.
REFUSALS: Final = ("origin", "host", "capacity", "per_ip", "token", "room_name", "http")
ORIGIN, HOST, CAPACITY, PER_IP, TOKEN, ROOM_NAME, HTTP = range(len(REFUSALS))

#: How a join ended.
JOIN_OUTCOMES: Final = ("ok", "room_full", "router_unavailable")
JOIN_OK, JOIN_ROOM_FULL, JOIN_ROUTER_UNAVAILABLE = range(len(JOIN_OUTCOMES))

ABNORMAL_CLOSE: Final = 1006  # a connection that ended without a closing handshake


class Family(NamedTuple):
    """A metric family the router exports (``mcp_`` + name), and its labels."""

    name: str
    help: str
    labels: tuple[str, ...] = ()


#: Counters a worker reports, by key prefix (a key is ``name`` or ``name|v1|v2``).
COUNTERS: Final = {
    f.name: f
    for f in (
        Family("messages_relayed", "Client messages accepted for relay", ("type", "path")),
        Family("relayed_bytes", "Bytes of client messages accepted for relay", ("path",)),
        Family("handshakes_refused", "Connections refused before joining a room", ("reason",)),
        Family("joins", "Joins by outcome", ("outcome",)),
        Family("error_frames", "Error frames sent to clients", ("code",)),
        Family("no_peer", "Messages not delivered: the sender was alone in its room"),
        Family("closes", "WebSocket connections closed, by close code", ("code",)),
        Family("rate_limited_frames", "Client frames over the rate limit"),
        Family("slow_readers_dropped", "Clients dropped because they stopped reading"),
    )
}


class HistogramSpec(NamedTuple):
    """A histogram a worker reports: its fixed bucket bounds; ``per_worker``: a worker label."""

    name: str
    help: str
    bounds: tuple[float, ...]
    per_worker: bool


_SECONDS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HISTOGRAMS: Final = {
    h.name: h
    for h in (
        HistogramSpec(
            "call_setup_seconds",
            "From a pair forming in a room to the first answer relayed in it",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            False,
        ),
        HistogramSpec(
            "router_rtt_seconds",
            "Worker -> router -> worker round trip of a heartbeat",
            _SECONDS,
            True,
        ),
        HistogramSpec(
            "event_loop_lag_seconds", "How late a worker's event loop ran a timer", _SECONDS, True
        ),
    )
}

#: Gauges a worker reports (current values, per worker).
GAUGES: Final = {
    f.name: f
    for f in (
        Family("connections_open", "Connections a worker holds, of every kind", ("worker",)),
        Family("websockets_open", "Signaling WebSockets a worker holds", ("worker",)),
        Family("worker_peers", "Peers a worker holds in rooms", ("worker",)),
        Family("worker_rooms", "Rooms a worker holds peers in", ("worker",)),
        Family(
            "router_links_up",
            "Router shards a worker is registered with (fewer than its --router list: one is down)",
            ("worker",),
        ),
    )
}


def key(name: str, *labels: object) -> str:
    """The wire key of one labelled series: ``name|v1|v2``."""
    return "|".join((name, *map(str, labels)))


def split_key(text: str) -> tuple[str, tuple[str, ...]]:
    name, *labels = text.split("|")
    return name, tuple(labels)


# --- counting -------------------------------------------------------------------


class Histogram:
    """Fixed buckets: ``counts[i]`` observations <= ``bounds[i]``, the last one the rest."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class WorkerCounters:
    """Everything a worker counts (one per process: :data:`counters`)."""

    __slots__ = (
        "_reported",
        "_reported_histograms",
        "call_setup",
        "closes",
        "error_frames",
        "event_loop_lag",
        "joins",
        "no_peer",
        "rate_limited",
        "refused",
        "relayed",
        "relayed_bytes",
        "router_rtt",
        "slow_readers",
    )

    def __init__(self) -> None:
        self.relayed = [0] * (len(KINDS) * len(PATHS))  # [kind * 2 + path]
        self.relayed_bytes = [0] * len(PATHS)
        self.refused = [0] * len(REFUSALS)
        self.joins = [0] * len(JOIN_OUTCOMES)
        self.error_frames = dict.fromkeys(sorted(protocol.ERROR_CODES), 0)
        self.no_peer = 0
        self.closes: dict[int, int] = {}
        self.rate_limited = 0
        self.slow_readers = 0
        self.call_setup = Histogram(HISTOGRAMS["call_setup_seconds"].bounds)
        self.router_rtt = Histogram(HISTOGRAMS["router_rtt_seconds"].bounds)
        self.event_loop_lag = Histogram(HISTOGRAMS["event_loop_lag_seconds"].bounds)
        self._reported: dict[str, int] = {}
        self._reported_histograms: dict[str, tuple[list[int], float]] = {}

    def closed(self, code: int) -> None:
        self.closes[code] = self.closes.get(code, 0) + 1

    def error(self, code: str) -> None:
        self.error_frames[code] = self.error_frames.get(code, 0) + 1

    def totals(self) -> Iterator[tuple[str, int]]:
        """Every counter series, by wire key, with its value since the process started."""
        for kind, name in enumerate(KINDS):
            for path, path_name in enumerate(PATHS):
                yield key("messages_relayed", name, path_name), self.relayed[kind * 2 + path]
        for path, path_name in enumerate(PATHS):
            yield key("relayed_bytes", path_name), self.relayed_bytes[path]
        for reason, count in zip(REFUSALS, self.refused, strict=True):
            yield key("handshakes_refused", reason), count
        for outcome, count in zip(JOIN_OUTCOMES, self.joins, strict=True):
            yield key("joins", outcome), count
        for code, count in self.error_frames.items():
            yield key("error_frames", code), count
        for close_code, count in self.closes.items():
            yield key("closes", close_code), count
        yield "no_peer", self.no_peer
        yield "rate_limited_frames", self.rate_limited
        yield "slow_readers_dropped", self.slow_readers

    def histograms(self) -> dict[str, Histogram]:
        return {
            "call_setup_seconds": self.call_setup,
            "router_rtt_seconds": self.router_rtt,
            "event_loop_lag_seconds": self.event_loop_lag,
        }

    def report(self, gauges: Mapping[str, int]) -> wire.Stats:
        """What changed since the last report (only series that moved), and ``gauges``."""
        reported = self._reported
        changed: dict[str, int] = {}
        for name, value in self.totals():
            delta = value - reported.get(name, 0)
            if delta:
                changed[name] = delta
                reported[name] = value
        deltas: dict[str, wire.HistogramDelta] = {}
        for name, histogram in self.histograms().items():
            counts = histogram.counts
            before, before_sum = self._reported_histograms.get(name) or ([0] * len(counts), 0.0)
            if counts != before:
                counts = list(counts)
                moved = [now - then for now, then in zip(counts, before, strict=True)]
                deltas[name] = wire.HistogramDelta(moved, histogram.sum - before_sum)
                self._reported_histograms[name] = (counts, histogram.sum)
        return wire.Stats(changed, deltas, dict(gauges))

    def unreport(self, stats: wire.Stats) -> None:
        """``stats`` never left: report its deltas again next time."""
        for name, delta in stats.counters.items():
            self._reported[name] -= delta
        for name, moved in stats.histograms.items():
            counts, total = self._reported_histograms[name]
            then = [now - delta for now, delta in zip(counts, moved.counts, strict=True)]
            self._reported_histograms[name] = (then, total - moved.sum)


counters: Final = WorkerCounters()
"""This process's counters."""


# --- who this worker is -----------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    return int(text) if text.lstrip("-").isdigit() else default


def slot() -> int:
    """This process's slot under ``serve`` (-1 when started by hand)."""
    return _env_int(SLOT_ENV, -1)


def generation() -> int:
    """How many times ``serve`` restarted this process's slot (0 when started by hand)."""
    return _env_int(GENERATION_ENV, 0)


_STARTED: Final = time.time()


def worker_info(welcomed: int) -> wire.WorkerInfo:
    """This worker, for its Hello; ``welcomed``: Welcomes it got so far."""
    return wire.WorkerInfo(
        socket.gethostname(), os.getpid(), slot(), generation(), _STARTED, welcomed
    )


# --- event-loop lag ---------------------------------------------------------------


class LoopLag:
    """Measures how late the event loop runs a timer, every ``interval`` seconds.

    A loop busy with one long callback (or starved of CPU) runs every timer
    late by as much; the lateness goes to ``counters.event_loop_lag``.
    """

    __slots__ = ("_due", "_handle", "_loop", "interval")

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._loop = asyncio.get_running_loop()
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._loop.time()
        counters.event_loop_lag.observe(max(0.0, now - self._due))
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)


GaugeSource = Callable[[], Mapping[str, int]]
