"""The router trusts no worker: hypothesis throws random bytes and random batches at Router.handle.

No socket is involved: :meth:`Router.handle` applies a batch to the room table
and queues replies, which we check and discard.  After every step the room
table must hold its invariants (no room over two peers, partners symmetric and
in the same room, indexes consistent), and no message may hit the router's
"a bug must cost one message" safety net.
"""

from __future__ import annotations

import logging
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_tornado import wire
from mcp_tornado.router.broker import Router
from mcp_tornado.router.rooms import MAX_PEERS, RoomTable
from mcp_tornado.settings import RouterSettings

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

workers = st.sampled_from([b"w1", b"w2", b"w3"]) | st.binary(max_size=8)
peers = st.integers(0, 4) | st.integers(-(2**63), 2**64 - 1)
rooms = st.sampled_from(["r", "s", "", "default"]) | st.text(max_size=10)
records = st.builds(wire.PeerRecord, peers, rooms, st.booleans())
to_router = st.one_of(
    st.builds(wire.Hello, st.lists(records, max_size=4)),
    st.builds(wire.Join, peers, rooms),
    st.builds(wire.Relay, peers, st.text(max_size=20)),
    st.builds(wire.Leave, peers),
    st.builds(wire.Ping, st.text(max_size=12)),
    st.builds(wire.Bye),
)
to_worker = st.one_of(  # router-only messages a confused or hostile worker might send
    st.builds(wire.Deliver, peers, st.text(max_size=10)),
    st.builds(wire.Welcome, st.text(max_size=5), st.lists(peers, max_size=3)),
    st.builds(wire.RoomFull, peers, rooms),
)
batches = st.lists(to_router, min_size=1, max_size=6)


def _mutate(frame: bytes, position: int, value: int) -> bytes:
    if not frame:
        return bytes([value])
    i = position % len(frame)
    return frame[:i] + bytes([value]) + frame[i + 1 :]


frames = st.one_of(
    batches.map(wire.encode_batch),
    batches.map(wire.encode_batch),
    st.binary(max_size=200),
    st.builds(_mutate, batches.map(wire.encode_batch), st.integers(0, 10_000), st.integers(0, 255)),
    st.lists(to_router | to_worker, max_size=4).map(wire.encode_batch),
    st.builds(lambda x: wire.encode_batch([]) + x, st.binary(max_size=10)),
)
steps = st.one_of(
    st.tuples(st.just("frame"), workers, frames),
    st.tuples(st.just("heartbeat"), st.floats(0, 5)),
    st.tuples(st.just("end grace")),
)


def check_invariants(table: RoomTable) -> None:
    rooms: dict[str, list[Any]] = table._rooms
    room_of = table._room_of
    partner = table._partner
    for room, members in rooms.items():
        assert 0 < len(members) <= MAX_PEERS, (room, members)
        assert len(set(members)) == len(members)
        for member in members:
            assert room_of[member] == room
        if len(members) == 2:
            a, b = members
            assert partner[a] == b and partner[b] == a
        else:
            assert members[0] not in partner
    assert sum(len(m) for m in rooms.values()) == len(room_of)
    for peer, other in partner.items():
        assert peer != other
        assert partner[other] == peer
        assert room_of[peer] == room_of[other]
    by_worker = {(w, p) for w, ps in table._by_worker.items() for p in ps}
    assert by_worker == set(room_of)
    assert all(ps for ps in table._by_worker.values())


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


EXAMPLES = {"router": 0}


@settings(FUZZ, max_examples=400)
@given(script=st.lists(steps, max_size=40), start_in_grace=st.booleans())
def test_random_worker_input_never_breaks_the_room_table(
    script: list[tuple[Any, ...]], start_in_grace: bool
) -> None:
    EXAMPLES["router"] += 1
    router = Router(RouterSettings(bind="inproc://unused", heartbeat_interval=1.0))
    if not start_in_grace:
        router._end_grace()
    errors = _Errors()
    logger = logging.getLogger("mcp_tornado.router.broker")
    logger.addHandler(errors)
    now = 1000.0
    try:
        for step in script:
            if step[0] == "frame":
                router.handle(step[1], step[2], now)
            elif step[0] == "heartbeat":
                now += step[1]
                router._heartbeat(now)
            elif router._in_grace:
                router._end_grace()
            check_invariants(router.rooms)
            for batch in router._outbox.values():  # every reply is a well-formed wire batch
                assert wire.decode_to_worker(wire.encode_batch(batch)) == batch
            router._outbox.clear()
    finally:
        logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


def test_regressions_found_by_the_fuzzer() -> None:
    # A msgpack string that is not UTF-8, and arrays nested past the recursion limit in
    # an ignored trailing element, used to escape Router.handle and kill the router.
    router = Router(RouterSettings(bind="inproc://unused"))
    router._end_grace()
    router.handle(b"w1", b"\x91\x92\x01\x91\x93\x00\xa1\x80", 0.0)
    router.handle(b"w1", b"\x91\x94\x02\x01\xa1r" + b"\x91" * 5000 + b"\x90", 0.0)
    router.handle(b"w1", wire.encode_batch([wire.Hello([]), wire.Join(1, "r")]), 0.0)
    assert router.rooms.room_of((b"w1", 1)) == "r"


def test_the_fuzzing_ran() -> None:
    assert EXAMPLES["router"] in (0, 400)  # 0 when run alone with -k
