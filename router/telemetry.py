"""Metrics, router side: every worker's deltas folded into deployment totals, served to Prometheus.

Usage (in the router's loop)::

    telemetry = RouterTelemetry()
    telemetry.serve("127.0.0.1", 9100)          # /metrics, in prometheus_client's own thread
    telemetry.hello(worker, hello.info, rejected=0)
    telemetry.fold(worker, stats)               # each wire.Stats a worker sends
    telemetry.drop(worker)                      # a worker is gone: its gauges go with it
    telemetry.publish(now, rooms, resumes)      # each heartbeat: a new snapshot for scrapes

Workers count with plain integers and send what changed with each heartbeat
(:mod:`mcp_tornado.telemetry`); the router sees every worker on every host,
so one scrape of its ``--metrics-port`` gives the totals of the whole
deployment (a per-worker endpoint behind ``SO_REUSEPORT`` would answer from a
random worker).  The router adds its own figures: rooms and peers open,
batch sizes, worker restarts (a worker's generation under ``serve`` moving
on), its own restarts, resyncs and resync conflicts, and the resume book's
totals (:class:`~mcp_tornado.router.suspended.ResumeBook`: suspended slots,
suspensions, resumes, refused resumes, and suspensions that lapsed or
overflowed their hold bound), read from its plain integers at each publish.

The loop thread owns every mutable table here.  The HTTP server runs in
prometheus_client's thread and reads only :attr:`RouterTelemetry.snapshot`,
an immutable :class:`Snapshot` that :meth:`RouterTelemetry.publish` replaces
(one reference assignment) once per heartbeat, so a scrape is at most one
heartbeat old and never sees a table being changed.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from mcp_tornado import telemetry, wire
from mcp_tornado.telemetry import COUNTERS, GAUGES, HISTOGRAMS, Histogram, split_key

if TYPE_CHECKING:
    from mcp_tornado.router.rooms import RoomTable
    from mcp_tornado.router.suspended import ResumeBook

log = logging.getLogger(__name__)

PREFIX: Final = "mcp_"
BATCH_BOUNDS: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)
_RATE_WINDOW: Final = 5.0  # seconds of samples behind the messages/s of `status`

SeriesKey = tuple[str, tuple[str, ...]]  # family name, label values


class _Seen:
    """A registered worker, as the metrics know it."""

    __slots__ = ("gauges", "info", "label")

    def __init__(self, name: bytes, info: wire.WorkerInfo | None) -> None:
        self.info = info
        text = name.decode(errors="replace")
        # A worker under serve keeps its label across restarts: host/slot.
        self.label = f"{info.host}/{info.index}" if info is not None and info.index >= 0 else text
        self.gauges: dict[str, int] = {}


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape shows, as of one heartbeat; never changed once published."""

    counters: tuple[tuple[SeriesKey, int], ...] = ()
    histograms: tuple[tuple[SeriesKey, tuple[int, ...], float], ...] = ()
    gauges: tuple[tuple[SeriesKey, float], ...] = ()

    def families(self) -> Iterator[Metric]:
        counters = {name: CounterMetricFamily(PREFIX + name, f.help, labels=f.labels)
                    for name, f in _ALL_COUNTERS.items()}  # fmt: skip
        for (name, labels), value in self.counters:
            counters[name].add_metric(labels, value)
        yield from counters.values()
        histograms = {
            name: HistogramMetricFamily(PREFIX + name, h.help, labels=h.labels)
            for name, h in _ALL_HISTOGRAMS.items()
        }
        for (name, labels), counts, total in self.histograms:
            bounds = _ALL_HISTOGRAMS[name].bounds
            cumulative, buckets = 0, []
            for bound, count in zip((*map(_le, bounds), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            histograms[name].add_metric(labels, buckets, total)
        yield from histograms.values()
        gauges = {name: GaugeMetricFamily(PREFIX + name, f.help, labels=f.labels)
                  for name, f in _ALL_GAUGES.items()}  # fmt: skip
        for (name, labels), level in self.gauges:
            gauges[name].add_metric(labels, level)
        yield from gauges.values()


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


class _HistogramSpec:
    __slots__ = ("bounds", "help", "labels")

    def __init__(self, help: str, bounds: tuple[float, ...], labels: tuple[str, ...]) -> None:
        self.help = help
        self.bounds = bounds
        self.labels = labels


F = telemetry.Family
_ALL_COUNTERS: Final = {
    **COUNTERS,
    **{
        f.name: f
        for f in (
            F("worker_restarts", "Workers that came back under serve (a new generation of a slot)"),
            F("router_restarts", "Times serve restarted the router"),
            F("resyncs", "Hello re-registrations of workers that had been registered before"),
            F("resync_conflicts", "Peers refused on re-registration: their room was full"),
            F("resume_suspensions", "Resumable peers whose slot was suspended for a resume"),
            F("resumes", "Suspended slots taken back (a resume, or their worker back)"),
            F("resume_refused", "Resumes refused: a used, forged, expired or other-room token"),
            F("resume_expired", "Suspended slots freed when their resume grace ended"),
            F("resume_overflowed", "Suspended slots freed: held messages over the bound"),
        )
    },
}
_ALL_HISTOGRAMS: Final = {
    **{
        name: _HistogramSpec(h.help, h.bounds, ("worker",) if h.per_worker else ())
        for name, h in HISTOGRAMS.items()
    },
    "router_batch_size": _HistogramSpec("Messages per batch a worker sent", BATCH_BOUNDS, ()),
}
_ALL_GAUGES: Final = {
    **GAUGES,
    **{
        f.name: f
        for f in (
            F("rooms_open", "Rooms with at least one peer"),
            F("peers_open", "Peers holding a slot in a room"),
            F("workers_registered", "Workers registered with the router"),
            F("resume_suspended", "Slots suspended now, waiting for their peer's resume"),
            F("router_start_time_seconds", "Unix time the router started"),
            F("worker_start_time_seconds", "Unix time a worker started", ("worker",)),
        )
    },
}


def _zero_series() -> Iterator[SeriesKey]:
    """Every counter series whose labels are known in advance: exported from 0, not when first
    counted (so a rate() over them starts at once)."""
    for key, _ in telemetry.WorkerCounters().totals():
        yield split_key(key)
    for name, family in _ALL_COUNTERS.items():
        if not family.labels:
            yield name, ()


class _Collector(Collector):
    """Hands prometheus_client the families of the latest published snapshot."""

    def __init__(self, source: RouterTelemetry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        return self._source.snapshot.families()


class RouterTelemetry:
    """The deployment's metrics, owned by the router's loop."""

    def __init__(self) -> None:
        self.started = time.time()
        self.generation = telemetry.generation()  # this router's restarts under serve
        self.counters: dict[SeriesKey, int] = dict.fromkeys(_zero_series(), 0)
        self.counters["router_restarts", ()] = self.generation
        self.histograms: dict[SeriesKey, Histogram] = {}
        self.batch_sizes = Histogram(BATCH_BOUNDS)
        self.workers: dict[bytes, _Seen] = {}
        self._generations: dict[tuple[str, int], int] = {}  # (host, slot) -> last generation seen
        self._rates: collections.deque[tuple[float, int]] = collections.deque()
        self.snapshot = Snapshot()
        self.server_address: tuple[str, int] | None = None

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` (0: any free port); raises ``OSError``."""
        registry = CollectorRegistry()
        registry.register(_Collector(self))
        server, _ = start_http_server(port, host, registry)
        bound_host, bound_port = server.server_address[:2]
        self.server_address = (str(bound_host), int(bound_port))
        log.info(
            "router: metrics on http://%s:%d/metrics",
            bound_host,
            bound_port,
            extra={"event": "metrics_listening", "host": str(bound_host), "port": bound_port},
        )

    # --- what the loop reports -------------------------------------------------

    def _count(self, name: str, amount: int = 1) -> None:
        key: SeriesKey = (name, ())
        self.counters[key] = self.counters.get(key, 0) + amount

    def hello(self, worker: bytes, info: wire.WorkerInfo | None, rejected: int) -> None:
        """``worker`` (re-)registered; ``rejected`` of its peers lost their rooms."""
        self.workers[worker] = _Seen(worker, info)
        if rejected:
            self._count("resync_conflicts", rejected)
        if info is None:
            return
        if info.welcomed:
            self._count("resyncs")
        if info.index >= 0:
            slot = (info.host, info.index)
            last = self._generations.get(slot)
            if last is not None and info.generation > last:
                self._count("worker_restarts", info.generation - last)
            if last is None or info.generation > last:
                self._generations[slot] = info.generation

    def fold(self, worker: bytes, stats: wire.Stats) -> None:
        """Add a worker's deltas to the totals and keep its gauges."""
        seen = self.workers.get(worker)
        if seen is None:
            return
        counters = self.counters
        for text, delta in stats.counters.items():
            key = split_key(text)
            family = COUNTERS.get(key[0])
            if family is not None and len(key[1]) == len(family.labels) and delta > 0:
                counters[key] = counters.get(key, 0) + delta
        for name, moved in stats.histograms.items():
            spec = HISTOGRAMS.get(name)
            if spec is None or len(moved.counts) != len(spec.bounds) + 1:
                continue
            series: SeriesKey = (name, (seen.label,) if spec.per_worker else ())
            histogram = self.histograms.get(series)
            if histogram is None:
                histogram = self.histograms[series] = Histogram(spec.bounds)
            for i, count in enumerate(moved.counts):
                if count > 0:
                    histogram.counts[i] += count
            histogram.sum += max(0.0, moved.sum)
        seen.gauges = {name: value for name, value in stats.gauges.items() if name in GAUGES}

    def drop(self, worker: bytes) -> None:
        self.workers.pop(worker, None)

    def messages(self) -> int:
        """Relayed messages since this router started."""
        return sum(v for (name, _), v in self.counters.items() if name == "messages_relayed")

    def publish(self, now: float, rooms: RoomTable, resumes: ResumeBook | None = None) -> None:
        """Replace :attr:`snapshot` with the state as of now; sample the message rate."""
        counters = self.counters
        if resumes is not None:  # totals since this router (and its book) started
            counters["resume_suspensions", ()] = resumes.suspensions
            counters["resumes", ()] = resumes.resumed
            counters["resume_refused", ()] = resumes.refused
            counters["resume_expired", ()] = resumes.expired
            counters["resume_overflowed", ()] = resumes.overflowed
        self._rates.append((now, self.messages()))
        while self._rates[0][0] < now - _RATE_WINDOW:
            self._rates.popleft()
        room_count, peer_count = rooms.counts()
        gauges: list[tuple[SeriesKey, float]] = [
            (("rooms_open", ()), room_count),
            (("peers_open", ()), peer_count),
            (("workers_registered", ()), len(self.workers)),
            (("router_start_time_seconds", ()), self.started),
            (("resume_suspended", ()), resumes.suspended_count if resumes is not None else 0),
        ]
        for seen in self.workers.values():
            label = (seen.label,)
            if seen.info is not None:
                gauges.append((("worker_start_time_seconds", label), seen.info.started))
            gauges += [((name, label), value) for name, value in seen.gauges.items()]
        histograms = [(key, tuple(h.counts), h.sum) for key, h in self.histograms.items()]
        batches = self.batch_sizes
        histograms.append((("router_batch_size", ()), tuple(batches.counts), batches.sum))
        self.snapshot = Snapshot(tuple(counters.items()), tuple(histograms), tuple(gauges))

    def messages_per_s(self) -> float:
        if len(self._rates) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._rates[0], self._rates[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def status(
        self, epoch: str, rooms: RoomTable, last_seen: dict[bytes, float], now: float
    ) -> wire.Status:
        """The answer to ``mcp-tornado status``."""
        room_count, peer_count = rooms.counts()
        wall = time.time()
        workers = []
        for name, seen in self.workers.items():
            info = seen.info
            gauges = seen.gauges
            workers.append(
                wire.WorkerStatus(
                    name=name.decode(errors="replace"),
                    host=info.host if info else "",
                    pid=info.pid if info else 0,
                    index=info.index if info else -1,
                    generation=info.generation if info else 0,
                    uptime=wall - info.started if info else 0.0,
                    peers=gauges.get("worker_peers", 0),
                    connections=gauges.get("connections_open", 0),
                    heartbeat_age=max(0.0, now - last_seen.get(name, now)),
                )
            )
        workers.sort(key=lambda w: (w.host, w.index, w.name))
        return wire.Status(
            epoch=epoch,
            uptime=wall - self.started,
            generation=self.generation,
            rooms=room_count,
            peers=peer_count,
            messages_per_s=self.messages_per_s(),
            messages=self.messages(),
            workers=workers,
        )
