"""Router-side metrics: workers' deltas folded into totals, restarts, the snapshot, status."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_tornado import supervisor, wire
from mcp_tornado.router.broker import Router
from mcp_tornado.router.rooms import RoomTable
from mcp_tornado.router.telemetry import RouterTelemetry
from mcp_tornado.settings import RouterSettings
from tests.support import free_port


def info(index: int, generation: int = 0, welcomed: int = 0, host: str = "h") -> wire.WorkerInfo:
    return wire.WorkerInfo(host, 100 + index, index, generation, 1000.0, welcomed)


def stats(counters: dict[str, int], gauges: dict[str, int] | None = None) -> wire.Stats:
    return wire.Stats(counters, {}, gauges or {})


def scrape(telemetry: RouterTelemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert telemetry.server_address is not None
    host, port = telemetry.server_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_deltas_of_every_worker_add_up_and_gauges_leave_with_their_worker() -> None:
    t = RouterTelemetry()
    t.hello(b"a", info(0), rejected=0)
    t.hello(b"b", info(1), rejected=0)
    t.fold(b"a", stats({"joins|ok": 2, "messages_relayed|offer|router": 1}, {"worker_peers": 2}))
    t.fold(b"b", stats({"joins|ok": 3}, {"worker_peers": 3}))
    bad = {"joins|ok": 1, "nonsense|x": 5, "joins": 7, "no_peer": -4}
    t.fold(b"a", stats(bad, {"worker_peers": 1, "nonsense": 9}))
    t.fold(b"stranger", stats({"joins|ok": 100}))  # not registered: ignored
    assert t.counters["joins", ("ok",)] == 6
    assert t.counters["no_peer", ()] == 0  # a negative delta never takes a counter back
    assert t.messages() == 1
    t.drop(b"b")
    t.publish(0.0, RoomTable())
    gauges = dict(t.snapshot.gauges)
    assert gauges["worker_peers", ("h/0",)] == 1  # its latest value
    assert ("nonsense", ("h/0",)) not in gauges
    assert ("worker_peers", ("h/1",)) not in gauges  # b is gone, and so is its gauge
    assert gauges["workers_registered", ()] == 1


def test_a_new_generation_of_a_slot_is_a_worker_restart_and_a_second_hello_a_resync() -> None:
    t = RouterTelemetry()
    t.hello(b"a", info(0), rejected=0)
    t.hello(b"a", info(0, welcomed=1), rejected=2)  # the router came back: a resync
    t.hello(b"a2", info(0, generation=1), rejected=0)  # serve restarted slot 0
    t.hello(b"b", info(1, generation=4), rejected=0)  # first seen: restarts before us unknown
    t.hello(b"c", info(0, host="other"), rejected=0)  # another host's slot 0
    assert t.counters["worker_restarts", ()] == 1
    assert t.counters["resyncs", ()] == 1
    assert t.counters["resync_conflicts", ()] == 2


def test_histograms_are_per_worker_where_their_spec_says_so() -> None:
    t = RouterTelemetry()
    t.hello(b"a", info(0), rejected=0)
    zero = [0] * 14
    rtt = wire.HistogramDelta([0, 2, *zero[2:]], 0.0015)
    setup = wire.HistogramDelta([1] + [0] * 12, 0.004)
    t.fold(b"a", wire.Stats({}, {"router_rtt_seconds": rtt, "call_setup_seconds": setup}, {}))
    t.fold(b"a", wire.Stats({}, {"router_rtt_seconds": wire.HistogramDelta([1], 1.0)}, {}))
    assert t.histograms["router_rtt_seconds", ("h/0",)].counts[1] == 2  # (the short one dropped)
    assert t.histograms["call_setup_seconds", ()].counts[0] == 1


def test_metrics_are_served_from_the_published_snapshot() -> None:
    t = RouterTelemetry()
    t.serve("127.0.0.1", 0)
    t.hello(b"a", info(0), rejected=0)
    t.fold(b"a", stats({"joins|ok": 2}, {"connections_open": 5}))
    t.batch_sizes.observe(3)
    before = scrape(t)
    assert ("mcp_joins_total", (("outcome", "ok"),)) not in before  # not published yet
    t.publish(0.0, RoomTable())
    after = scrape(t)
    assert after[("mcp_joins_total", (("outcome", "ok"),))] == 2
    assert after[("mcp_connections_open", (("worker", "h/0"),))] == 5
    assert after[("mcp_router_batch_size_bucket", (("le", "4.0"),))] == 1
    assert after[("mcp_router_batch_size_count", ())] == 1
    assert after[("mcp_messages_relayed_total", (("path", "local"), ("type", "answer")))] == 0


def test_a_status_query_is_answered_without_registering_the_asker() -> None:
    router = Router(RouterSettings(bind="inproc://unused"))
    router._end_grace()
    router.handle(b"w1", wire.encode_batch([wire.Hello([], info(0)), wire.Join(1, "r")]), 5.0)
    router._outbox.clear()
    router.handle(b"status", wire.encode_batch([wire.Query()]), 6.0)
    (answer,) = router._outbox.pop(b"status")
    assert isinstance(answer, wire.Status)
    assert (answer.rooms, answer.peers, len(answer.workers)) == (1, 1, 1)
    assert answer.workers[0].heartbeat_age == 1.0
    assert b"status" not in router._workers and not router._outbox
    assert wire.decode_status(wire.encode_batch([answer])) == answer


def test_the_resume_books_totals_are_published_as_the_resume_metrics() -> None:
    counters = (
        "resume_suspensions",
        "resumes",
        "resume_refused",
        "resume_expired",
        "resume_overflowed",
    )
    router = Router(
        RouterSettings(bind="inproc://unused", resume_grace=5.0, resume_hold_messages=2)
    )
    router._end_grace()
    router.telemetry.serve("127.0.0.1", 0)

    def send(worker: bytes, *batch: wire.ToRouter, now: float = 1.0) -> list[wire.ToWorker]:
        router.handle(worker, wire.encode_batch(batch), now)
        return router._outbox.pop(worker, [])

    def published() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        router.telemetry.publish(2.0, router.rooms, router.resumes)
        return {key: value for key, value in scrape(router.telemetry).items() if "resume" in key[0]}

    def totals(suspended: int, *counts: int) -> dict[tuple[str, tuple[()]], float]:
        return {("mcp_resume_suspended", ()): float(suspended)} | {
            (f"mcp_{name}_total", ()): float(count)
            for name, count in zip(counters, counts, strict=True)
        }

    assert published() == totals(0, 0, 0, 0, 0, 0)  # exported from zero
    (joined,) = send(b"w1", wire.Hello([]), wire.Join(1, "r", True))[1:]
    send(b"w2", wire.Hello([]), wire.Join(1, "r", True))
    assert isinstance(joined, wire.Joined) and joined.resume
    send(b"w1", wire.Lost(1))  # suspended
    assert published() == totals(1, 1, 0, 0, 0, 0)
    assert isinstance(send(b"w2", wire.Resume(2, "r", "forged"))[-1], wire.ResumeRefused)
    assert isinstance(send(b"w2", wire.Resume(2, "r", joined.resume))[0], wire.Resumed)
    assert published() == totals(0, 1, 1, 1, 0, 0)
    send(b"w2", wire.Lost(2))
    router._expire_suspended(1.0 + 5.0)  # the grace is over: freed
    # A suspended peer whose partner says more than the hold bound (2 messages): freed.
    send(b"w1", wire.Join(5, "s", True))
    send(b"w2", wire.Join(6, "s", True))
    send(b"w1", wire.Lost(5))
    send(b"w2", *(wire.Relay(6, b"{}") for _ in range(3)))
    router._hold_outbox()
    assert published() == totals(0, 3, 1, 1, 1, 1)


def test_a_workers_timed_ping_is_echoed_at_once() -> None:
    router = Router(RouterSettings(bind="inproc://unused"))
    router.handle(b"w1", wire.encode_batch([wire.Hello([]), wire.Ping("w", 12.5)]), 0.0)
    echoes = [m for m in router._outbox[b"w1"] if type(m) is wire.Ping]
    assert echoes == [wire.Ping(router.epoch, 12.5)]


def test_the_metrics_port_is_a_setting_of_serve_for_its_router() -> None:
    from mcp_tornado.cli import parse_settings
    from mcp_tornado.settings import ServeSettings

    port = free_port()
    settings = parse_settings(["serve", "--metrics-port", str(port), "--metrics-host", "::1"])
    assert isinstance(settings, ServeSettings)
    (router,), _ = settings.children(("ipc:///x",))
    assert (router.metrics_port, router.metrics_host) == (port, "::1")


def test_the_routers_restarts_are_its_generation_under_serve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(supervisor.GENERATION_ENV, "3")
    assert RouterTelemetry().counters["router_restarts", ()] == 3
    monkeypatch.delenv(supervisor.GENERATION_ENV)
    assert RouterTelemetry().counters["router_restarts", ()] == 0
