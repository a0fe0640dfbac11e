"""Worker-side metrics: counters, histograms, deltas per report, and what a peer counts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import cast

import pytest

from mcp_tornado import protocol, supervisor, telemetry, wire
from mcp_tornado.admission import Gatekeeper
from mcp_tornado.hub import Hub
from mcp_tornado.peer import SignalEndpoint
from mcp_tornado.router_link import RouterLink
from mcp_tornado.settings import LimitSettings
from mcp_tornado.telemetry import WorkerCounters, counters
from tests.rawws import TEXT, encode_frame
from tests.stubs import StubLink
from tests.test_peer import connect, only_peer


def test_a_histogram_puts_each_value_in_the_first_bucket_it_fits() -> None:
    histogram = telemetry.Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 1]  # <= 0.1, <= 1.0, the rest
    assert histogram.sum == pytest.approx(8.65)


def test_a_report_holds_what_moved_since_the_last_one() -> None:
    c = WorkerCounters()
    c.relayed[protocol.OFFER * 2 + telemetry.ROUTED] += 3
    c.relayed_bytes[telemetry.ROUTED] += 30
    c.joins[telemetry.JOIN_OK] += 2
    c.closed(4409)
    c.call_setup.observe(0.02)
    first = c.report({"worker_peers": 2})
    assert first.counters == {
        "messages_relayed|offer|router": 3,
        "relayed_bytes|router": 30,
        "joins|ok": 2,
        "closes|4409": 1,
    }
    assert list(first.histograms) == ["call_setup_seconds"]
    assert sum(first.histograms["call_setup_seconds"].counts) == 1
    assert first.gauges == {"worker_peers": 2}
    assert c.report({}) == wire.Stats({}, {}, {})  # nothing moved: nothing reported twice
    c.joins[telemetry.JOIN_OK] += 1
    c.call_setup.observe(0.03)
    second = c.report({})
    assert second.counters == {"joins|ok": 1}
    assert second.histograms["call_setup_seconds"].sum == pytest.approx(0.03)


def test_a_report_that_never_left_is_reported_again() -> None:
    c = WorkerCounters()
    c.no_peer += 2
    c.router_rtt.observe(0.001)
    lost = c.report({})
    c.unreport(lost)
    c.no_peer += 1
    again = c.report({})
    assert again.counters == {"no_peer": 3}
    assert (
        again.histograms["router_rtt_seconds"].counts
        == lost.histograms["router_rtt_seconds"].counts
    )


def test_every_counter_key_names_a_family_with_its_labels() -> None:
    for key, _ in WorkerCounters().totals():
        name, labels = telemetry.split_key(key)
        assert len(labels) == len(telemetry.COUNTERS[name].labels), key


@pytest.mark.parametrize("kind", protocol.RELAYED_KINDS)
def test_the_one_decode_gives_the_type_of_a_relayed_frame(kind: str) -> None:
    frame = json.dumps({"type": kind}).encode()
    assert protocol.client_frame_kind(frame) == protocol.RELAYED_KINDS.index(kind)
    assert protocol.check_client_frame(frame) is None


def test_a_frame_that_may_not_be_relayed_gives_its_error() -> None:
    error = protocol.client_frame_kind(b'{"type":"hello"}')
    assert isinstance(error, protocol.Error) and error.code == protocol.ErrorCode.UNKNOWN_TYPE


# --- what a peer counts ---------------------------------------------------------------


@pytest.fixture
def fresh() -> Iterator[None]:
    """The process's counters, reported (zeroed for deltas) before and after the test."""
    counters.report({})
    yield
    counters.report({})


def _worker() -> tuple[Hub, StubLink, SignalEndpoint]:
    link = StubLink()
    hub = Hub(Gatekeeper(LimitSettings(rate=0)))
    hub.attach(cast(RouterLink, link))
    return hub, link, SignalEndpoint(hub, hub.gate, 1024)


def _text(payload: dict[str, object]) -> bytes:
    return encode_frame(TEXT, json.dumps(payload).encode(), mask=True)


@pytest.mark.gen_test
@pytest.mark.usefixtures("fresh")
async def test_a_peer_counts_relays_by_type_and_path_and_times_the_call_set_up() -> None:
    hub, link, endpoint = _worker()
    connection, _ = connect(endpoint)
    peer = only_peer(hub)
    peer_id = cast(int, peer.peer_id)
    hub.joined(peer_id, "r", 1, False, 0)  # alone: it will answer the newcomer's offer
    hub.peer_joined(peer_id, "r", 2, 0)
    assert peer.paired_at > 0
    connection.data_received(_text({"type": "candidate", "candidate": "c"}))
    connection.data_received(_text({"type": "answer", "sdp": "v=0"}))
    connection.data_received(_text({"type": "answer", "sdp": "v=0"}))  # a renegotiation
    connection.data_received(encode_frame(TEXT, b"nope!"))  # invalid JSON
    stats = counters.report({})
    assert stats.counters["messages_relayed|candidate|router"] == 1
    assert stats.counters["messages_relayed|answer|router"] == 2
    assert stats.counters["joins|ok"] == 1
    assert stats.counters["error_frames|invalid_json"] == 1
    assert "messages_relayed|offer|router" not in stats.counters
    assert sum(stats.histograms["call_setup_seconds"].counts) == 1  # the first answer only
    assert len(link.relayed) == 3


@pytest.mark.gen_test
@pytest.mark.usefixtures("fresh")
async def test_refusals_and_closes_are_counted_by_reason_and_code() -> None:
    hub, _, endpoint = _worker()
    connect(endpoint, "?room=" + "x" * 300)  # over --max-room-length: 4400
    connection, _ = connect(endpoint)
    hub.room_full(cast(int, only_peer(hub).peer_id))
    stats = counters.report({})
    assert stats.counters["handshakes_refused|room_name"] == 1
    assert stats.counters["error_frames|invalid_room"] == 1
    assert stats.counters["joins|room_full"] == 1
    assert stats.counters["closes|4400"] == 1
    assert stats.counters["closes|4409"] == 1
    connection.connection_lost(None)
    assert "closes|1006" not in counters.report({}).counters  # its close frame went out


def test_a_worker_says_who_it_is_from_what_serve_gave_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(supervisor.SLOT_ENV, "3")
    monkeypatch.setenv(supervisor.GENERATION_ENV, "2")
    info = telemetry.worker_info(welcomed=1)
    assert (info.index, info.generation, info.welcomed) == (3, 2, 1)
    monkeypatch.delenv(supervisor.SLOT_ENV)
    monkeypatch.delenv(supervisor.GENERATION_ENV)
    assert (telemetry.slot(), telemetry.generation()) == (-1, 0)


@pytest.mark.gen_test
@pytest.mark.usefixtures("fresh")
async def test_refusals_before_the_upgrade_are_counted_by_reason() -> None:
    from mcp_tornado.capacity import Capacity
    from mcp_tornado.connection import Connection
    from tests.rawws import upgrade_request
    from tests.stubs import StubTransport

    capacity = Capacity(max_connections=2, max_per_ip=1)
    assert capacity.take("a") is None
    assert capacity.take("a") is not None  # one per address
    assert capacity.take("b") is None
    assert capacity.take("c") is not None  # two in total
    _, _, endpoint = _worker()
    for request in (
        upgrade_request(8000, "/ws/signal/?room=r", {"Origin": "https://evil.example"}),
        upgrade_request(8000, "/ws/signal/?room=r").replace(b"Host: 127.0.0.1:8000", b"Host: x.y"),
        upgrade_request(8000, "/ws/signal/").replace(b"Sec-WebSocket-Version: 13", b""),
    ):
        connection = Connection(endpoint, None)
        connection.connection_made(StubTransport())
        connection.data_received(request)
    refused = {k: v for k, v in counters.report({}).counters.items() if "refused" in k}
    assert refused == {
        "handshakes_refused|per_ip": 1,
        "handshakes_refused|capacity": 1,
        "handshakes_refused|origin": 1,
        "handshakes_refused|host": 1,
        "handshakes_refused|http": 1,
    }
