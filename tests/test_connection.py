"""The I/O shell of a WebSocket: handshake, event order, write batching, closing, back-pressure.

Driven through a stub transport with the test echo (tests/echo.py) as its
handler, so each rule of :class:`~mcp_tornado.connection.Connection` is seen
without sockets or routers.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from mcp_tornado.connection import Connection
from tests.echo import EchoEndpoint, EchoHandler
from tests.rawws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Frame,
    encode_frame,
    upgrade_request,
)
from tests.stubs import StubTransport

pytestmark = pytest.mark.gen_test


def opened(endpoint: EchoEndpoint | None = None) -> tuple[Connection, StubTransport]:
    connection = Connection(endpoint or EchoEndpoint(), None)
    transport = StubTransport()
    connection.connection_made(transport)
    connection.data_received(upgrade_request(8000, "/ws/signal/"))
    assert transport.head().startswith(b"HTTP/1.1 101 ")
    return connection, transport


async def turn() -> None:
    await asyncio.sleep(0)


async def test_messages_of_one_read_are_answered_in_one_write_at_the_end_of_the_turn() -> None:
    connection, transport = opened()
    connection.data_received(
        encode_frame(TEXT, b"one") + encode_frame(BINARY, b"\x00two") + encode_frame(PING, b"p")
    )
    assert len(transport.writes) == 1  # just the 101 so far
    await turn()
    assert len(transport.writes) == 2
    assert transport.frames() == [Frame(TEXT, b"one"), Frame(BINARY, b"\x00two"), Frame(PONG, b"p")]


async def test_a_request_head_in_pieces_and_frames_right_behind_it() -> None:
    connection = Connection(EchoEndpoint(), None)
    transport = StubTransport()
    connection.connection_made(transport)
    data = upgrade_request(8000, "/ws/signal/") + encode_frame(TEXT, b"early")
    for i in range(len(data)):
        connection.data_received(data[i : i + 1])
    await turn()
    assert transport.head().startswith(b"HTTP/1.1 101 ")
    assert transport.frames() == [Frame(TEXT, b"early")]


async def test_answers_to_valid_frames_leave_before_the_failure_close() -> None:
    connection, transport = opened()
    connection.data_received(encode_frame(TEXT, b"valid") + encode_frame(TEXT, b"x", mask=False))
    first, failure = transport.frames()
    assert first == Frame(TEXT, b"valid")
    assert failure.close_code == 1002
    assert transport.closed
    connection.data_received(encode_frame(TEXT, b"after"))  # nothing more is read
    await turn()
    assert len(transport.frames()) == 2


async def test_the_clients_close_is_echoed_and_the_connection_closed() -> None:
    endpoint = EchoEndpoint()
    connection, transport = opened(endpoint)
    assert endpoint.open == 1
    connection.data_received(encode_frame(CLOSE, b"\x0f\xa0bye"))  # 4000
    assert [f.close_code for f in transport.frames()] == [4000]
    assert transport.closed
    connection.connection_lost(None)
    assert endpoint.open == 0


async def test_our_close_waits_for_the_clients_answer_then_closes() -> None:
    connection, transport = opened()
    connection.send_text(b"last words")
    connection.close(1001, "going away")
    assert [f.opcode for f in transport.frames()] == [TEXT, CLOSE]
    assert transport.frames()[1].close_code == 1001
    assert not transport.closed
    connection.send_text(b"too late")  # after our close frame: discarded
    connection.data_received(encode_frame(CLOSE, b"\x03\xe9"))
    await turn()
    assert transport.closed and len(transport.frames()) == 2


async def test_a_refused_upgrade_gets_its_http_error_and_nothing_more_is_read() -> None:
    connection = Connection(EchoEndpoint(), None)
    transport = StubTransport()
    connection.connection_made(transport)
    connection.data_received(b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.head().startswith(b"HTTP/1.1 404 ")
    assert transport.closed
    connection.data_received(upgrade_request(8000, "/ws/signal/"))
    assert len(transport.writes) == 1


class _Stalls(EchoEndpoint):
    def __init__(self) -> None:
        super().__init__()
        self.max_backlog = 1000
        self.stalled: list[Connection] = []

    def accept(self, connection: Connection, request: object) -> EchoHandler:
        endpoint = self

        class Handler(EchoHandler):
            def stalled(self) -> None:
                endpoint.stalled.append(self.connection)

        return Handler(connection)


async def test_a_client_that_stops_reading_is_reported_within_the_turn_and_after_a_write() -> None:
    endpoint = _Stalls()
    connection, transport = opened(endpoint)
    connection.send_text(b"x" * 900)
    assert endpoint.stalled == []
    connection.send_text(b"x" * 200)  # over the cap within one turn: dropped, reported
    assert endpoint.stalled == [connection]
    await turn()
    assert transport.frames() == []
    transport.buffered = 5000  # the kernel and the transport hold too much
    connection.send_text(b"y")
    await turn()
    assert endpoint.stalled == [connection, connection]


class _Tracked(EchoHandler):
    __slots__ = ("__weakref__",)


async def test_a_lost_connection_and_its_handler_are_freed_by_reference_counting() -> None:
    endpoint = EchoEndpoint()
    handlers: list[weakref.ref[_Tracked]] = []

    def accept(connection: Connection, request: object) -> _Tracked:
        handler = _Tracked(connection)
        handlers.append(weakref.ref(handler))
        return handler

    endpoint.accept = accept  # type: ignore[method-assign]
    connection, _ = opened(endpoint)
    gc.disable()
    try:
        connection.connection_lost(None)
        del connection
        assert handlers[0]() is None, "a reference cycle keeps the handler alive"
    finally:
        gc.enable()


class _Counts(EchoHandler):
    counts: list[int]

    def frames_received(self, count: int) -> None:
        self.counts.append(count)


async def test_fragments_and_pongs_reach_the_handler_as_one_count_per_read() -> None:
    endpoint = EchoEndpoint()
    handlers: list[_Counts] = []

    def accept(connection: Connection, request: object) -> _Counts:
        handler = _Counts(connection)
        handler.counts = []
        handlers.append(handler)
        return handler

    endpoint.accept = accept  # type: ignore[method-assign]
    connection, _ = opened(endpoint)
    connection.data_received(encode_frame(TEXT, b"whole"))  # the hot path: nothing to count
    assert handlers[0].counts == []
    connection.data_received(
        encode_frame(TEXT, b"a", fin=False)
        + encode_frame(PONG, b"")
        + encode_frame(CONTINUATION, b"b", fin=False)
        + encode_frame(CONTINUATION, b"c")
    )
    assert handlers[0].counts == [3]  # two fragments before the last, one pong
    connection.data_received(encode_frame(PONG, b"") * 2)
    assert handlers[0].counts == [3, 2]


async def test_a_client_that_floods_instead_of_answering_our_close_is_cut_off() -> None:
    connection, transport = opened(EchoEndpoint(max_message_size=1000))
    connection.close(4429, "rate limited")
    assert not transport.closed  # waiting for the client's answer
    pongs = encode_frame(PONG, b"x" * 100) * 100
    reads = 0
    while not transport.closed and reads < 1000:
        connection.data_received(pongs)
        reads += 1
    assert transport.closed  # closed once past the budget, not parsed until the deadline
    assert reads * len(pongs) <= 1000 + 64 * 1024 + len(pongs)
    assert [f.opcode for f in transport.frames()] == [CLOSE]  # no second close frame


@pytest.mark.parametrize("pieces", [1, 3])
async def test_a_head_over_the_cap_gets_431_in_one_read_or_in_pieces(pieces: int) -> None:
    # 70-100 KB heads in one read were parsed (the cap held only for heads in pieces).
    request = upgrade_request(8000, "/ws/signal/", {"X-Pad": "p" * 90_000})
    connection = Connection(EchoEndpoint(), None)
    transport = StubTransport()
    connection.connection_made(transport)
    step = -(-len(request) // pieces)
    for at in range(0, len(request), step):
        if not transport.closed:
            connection.data_received(request[at : at + step])
    assert transport.head().startswith(b"HTTP/1.1 431 ")
    assert transport.closed
