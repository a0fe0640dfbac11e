"""The router's loop, driven over real ZeroMQ sockets (inproc) by fake workers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import zmq

from mcp_tornado import wire
from mcp_tornado.router.broker import Router
from mcp_tornado.settings import RouterSettings

T = TypeVar("T")


class FakeWorker:
    """A DEALER that speaks the wire format, for driving a router by hand."""

    def __init__(self, endpoint: str, name: str) -> None:
        self.name = name.encode()
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, self.name)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(endpoint)
        self.inbox: list[wire.ToWorker] = []

    def send(self, *messages: wire.ToRouter) -> None:
        self.sock.send(wire.encode_batch(list(messages)))

    def hello(self, *peers: wire.PeerRecord) -> wire.Welcome:
        self.send(wire.Hello(list(peers)))
        return self.expect(wire.Welcome)

    def _fill(self, timeout: float) -> None:
        self.send(wire.Ping(self.name.decode()))  # stay alive while we wait
        if self.sock.poll(int(timeout * 1000)):
            while True:
                try:
                    frame = self.sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.inbox.extend(
                    m for m in wire.decode_to_worker(frame) if type(m) is not wire.Ping
                )

    def expect(self, kind: type[T], timeout: float = 3.0) -> T:
        """Wait for the next message of ``kind``, skipping heartbeats; anything else fails."""
        deadline = time.monotonic() + timeout
        while not self.inbox:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name!r}: no {kind.__name__} within {timeout}s")
            self._fill(0.05)
        msg = self.inbox.pop(0)
        assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg!r}"
        return msg

    def quiet(self, seconds: float = 0.2) -> bool:
        """True if nothing but heartbeats arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._fill(0.02)
        return not self.inbox

    def close(self) -> None:
        self.sock.close()


RouterFactory = Callable[..., tuple[Router, str]]


def pair_up(first: FakeWorker, second: FakeWorker, room: str = "r") -> None:
    """Register both workers and put peer 1 of each in ``room``, ``first``'s arriving first."""
    first.hello()
    second.hello()
    first.send(wire.Join(1, room))
    first.expect(wire.Joined)
    second.send(wire.Join(1, room))
    second.expect(wire.Joined)
    first.expect(wire.PeerJoined)


@pytest.fixture
def start_router() -> Iterator[RouterFactory]:
    started: list[tuple[Router, threading.Thread]] = []

    def start(**overrides: float | int) -> tuple[Router, str]:
        endpoint = f"inproc://router-{uuid.uuid4().hex}"
        options: dict[str, float | int] = {
            "heartbeat_interval": 0.05,
            "heartbeat_liveness": 10,
            "resync_grace": 0.0,
        }
        options.update(overrides)
        router = Router(RouterSettings(bind=endpoint, **options))  # type: ignore[arg-type]
        router.bind()
        thread = threading.Thread(target=router.run, daemon=True)
        thread.start()
        started.append((router, thread))
        return router, endpoint

    yield start
    for router, thread in started:
        router.stop()
        thread.join(5)
        assert not thread.is_alive()


@pytest.fixture
def workers() -> Iterator[Callable[[str, str], FakeWorker]]:
    made: list[FakeWorker] = []

    def make(endpoint: str, name: str) -> FakeWorker:
        worker = FakeWorker(endpoint, name)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


def test_pairing_relay_and_room_full(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router()
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    assert w1.hello().rejected == []
    w2.hello()
    w1.send(wire.Join(1, "r"))
    assert w1.expect(wire.Joined) == wire.Joined(1, "r", 1, False)
    w2.send(wire.Join(7, "r"))
    assert w2.expect(wire.Joined) == wire.Joined(7, "r", 2, True)
    assert w1.expect(wire.PeerJoined) == wire.PeerJoined(1, "r", 2)
    w2.send(wire.Relay(7, b'{"type":"offer"}'))
    assert w1.expect(wire.Deliver) == wire.Deliver(1, b'{"type":"offer"}')
    assert w2.quiet(), "the sender must not get its own message back"
    w1.send(wire.Join(2, "r"))
    assert w1.expect(wire.RoomFull) == wire.RoomFull(2, "r")


def test_message_while_alone_is_not_delivered_later(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router()
    w1 = workers(endpoint, "w1")
    w1.hello()
    w1.send(wire.Join(1, "r"), wire.Relay(1, b'{"type":"offer"}'))
    w1.expect(wire.Joined)
    assert w1.expect(wire.NoPeer) == wire.NoPeer(1)
    w1.send(wire.Join(2, "r"))
    w1.expect(wire.Joined)
    w1.expect(wire.PeerJoined)
    assert w1.quiet()


def test_join_and_first_message_in_one_batch_are_ordered(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router()
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    w1.hello()
    w2.hello()
    w1.send(wire.Join(1, "r"))
    w1.expect(wire.Joined)
    w2.send(wire.Join(1, "r"), wire.Relay(1, b"first"), wire.Relay(1, b"second"))
    w1.expect(wire.PeerJoined)
    assert w1.expect(wire.Deliver).payload == b"first"
    assert w1.expect(wire.Deliver).payload == b"second"


def test_leave_frees_the_slot_and_tells_the_partner(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router()
    w1 = workers(endpoint, "w1")
    w1.hello()
    w1.send(wire.Join(1, "r"), wire.Join(2, "r"))
    w1.expect(wire.Joined)
    w1.expect(wire.Joined)
    w1.expect(wire.PeerJoined)
    w1.send(wire.Leave(2))
    assert w1.expect(wire.PeerLeft) == wire.PeerLeft(1, "r", 1)
    assert w1.expect(wire.Left) == wire.Left(2)  # now peer 2 may complete its close
    w1.send(wire.Join(3, "r"))
    assert w1.expect(wire.Joined) == wire.Joined(3, "r", 2, True, local_partner=1)


def test_unknown_worker_is_asked_to_reregister(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router()
    w1 = workers(endpoint, "w1")
    w1.send(wire.Relay(4, b"x"), wire.Relay(5, b"y"))
    assert w1.expect(wire.Reregister) == wire.Reregister([4, 5])


def test_silent_worker_is_dropped_and_partners_told(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(heartbeat_liveness=3)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    pair_up(w1, w2)
    started = time.monotonic()
    # w1 keeps heartbeating, w2 goes silent.
    while True:
        w1.send(wire.Ping("w1"))
        w1._fill(0.02)
        if w1.inbox:
            break
        assert time.monotonic() - started < 2, "silent worker was never dropped"
    assert w1.expect(wire.PeerLeft) == wire.PeerLeft(1, "r", 1)
    assert time.monotonic() - started < 0.05 * 3 + 0.2
    assert router.rooms.peers_of_worker(b"w1") == {1}
    assert router.rooms.peers_of_worker(b"w2") == set()


def test_bye_drops_a_worker_at_once(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router()
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    pair_up(w1, w2)
    w2.send(wire.Bye())
    assert w1.expect(wire.PeerLeft, timeout=0.1) == wire.PeerLeft(1, "r", 1)


def test_malformed_input_is_dropped_and_the_router_keeps_going(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router()
    w1 = workers(endpoint, "w1")
    w1.hello()
    w1.sock.send(b"\xc1garbage")
    w1.sock.send_multipart([b"two", b"frames"])
    w1.sock.send(wire.encode_batch([wire.Deliver(1, b"router-only message")]))
    w1.send(wire.Join(1, "r"))
    assert w1.expect(wire.Joined).peer == 1


def test_resync_rebuilds_rooms_and_settles_conflicts(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(resync_grace=0.3, heartbeat_liveness=100)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    assert w1.hello(wire.PeerRecord(1, "r", True), wire.PeerRecord(2, "s", True)).rejected == []
    # w2 claims a partner for both rooms, plus a third peer in r: first come, first served.
    welcome = w2.hello(
        wire.PeerRecord(1, "r", True), wire.PeerRecord(2, "r", True), wire.PeerRecord(3, "s", True)
    )
    assert welcome.rejected == [2]
    assert router.rooms.peers_of_worker(b"w1") == {1, 2}
    assert router.rooms.peers_of_worker(b"w2") == {1, 3}
    w2.send(wire.Relay(1, b"after resync"))
    assert w1.expect(wire.Deliver) == wire.Deliver(1, b"after resync")
    assert w1.quiet(0.5) and w2.quiet(0.1), "resynced pairs must not be re-announced"


def test_a_peer_whose_partner_never_returns_is_told_after_the_grace(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(resync_grace=0.2)
    w1 = workers(endpoint, "w1")
    w1.hello(wire.PeerRecord(1, "r", True))
    assert w1.expect(wire.PeerLeft, timeout=1) == wire.PeerLeft(1, "r", 1)


def test_joins_during_the_grace_wait_for_resynced_peers(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(resync_grace=0.3)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    w1.hello()
    w1.send(wire.Join(9, "r"), wire.Relay(9, b"early"))  # a newcomer, arriving first
    w2.hello(wire.PeerRecord(1, "r", False), wire.PeerRecord(2, "r", False))  # survivors
    assert w1.expect(wire.RoomFull, timeout=1) == wire.RoomFull(9, "r")
    assert w2.quiet(0.1)


def test_flood_loses_nothing_under_back_pressure(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    # Tiny high-water marks force the ROUTER_MANDATORY back-pressure path.
    _, endpoint = start_router(hwm=4, heartbeat_liveness=100)
    sender, receiver = workers(endpoint, "tx"), workers(endpoint, "rx")
    receiver.sock.setsockopt(zmq.RCVHWM, 4)
    pair_up(sender, receiver)
    total, per_batch = 100_000, 100
    for start in range(0, total, per_batch):
        sender.send(*(wire.Relay(1, str(i).encode()) for i in range(start, start + per_batch)))
    time.sleep(0.3)  # let the router hit the receiver's high-water mark
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < total and time.monotonic() < deadline:
        receiver._fill(0.1)
        got.extend(m.payload for m in receiver.inbox if isinstance(m, wire.Deliver))
        receiver.inbox.clear()
    assert len(got) == total
    assert got == [str(i).encode() for i in range(total)]


def test_a_join_racing_a_leave_from_another_worker_is_not_refused(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router()
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    w1.hello()
    w2.hello()
    w1.send(wire.Join(1, "r"), wire.Join(2, "r"))
    w1.expect(wire.Joined)
    w1.expect(wire.Joined)
    w1.expect(wire.PeerJoined)
    # Peer 2 closes and rejoins through w2: its Leave is queued on w1's pipe before its
    # Join goes out on w2's, but ZeroMQ fair-queues the two pipes, so the router may
    # read the Join first. Either order must end with the newcomer in the room.
    w1.send(wire.Leave(2))
    w2.send(wire.Join(5, "r"), wire.Relay(5, b"first"))
    assert w2.expect(wire.Joined) == wire.Joined(5, "r", 2, True)
    assert w1.expect(wire.PeerLeft) == wire.PeerLeft(1, "r", 1)
    assert w1.expect(wire.Left) == wire.Left(2)
    assert w1.expect(wire.PeerJoined) == wire.PeerJoined(1, "r", 2)
    assert w1.expect(wire.Deliver) == wire.Deliver(1, b"first")


def test_a_pair_on_one_worker_is_told_so_and_fences_keep_their_place(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router()
    w1 = workers(endpoint, "w1")
    w1.hello()
    w1.send(wire.Join(1, "r"))
    assert w1.expect(wire.Joined) == wire.Joined(1, "r", 1, False, 0)
    w1.send(wire.Join(2, "r"))
    assert w1.expect(wire.Joined) == wire.Joined(2, "r", 2, True, local_partner=1)
    assert w1.expect(wire.PeerJoined) == wire.PeerJoined(1, "r", 2, local_partner=2)
    w1.send(wire.Relay(1, b"a"), wire.Fence(1, 5), wire.Relay(1, b"b"))
    assert w1.expect(wire.Deliver) == wire.Deliver(2, b"a")
    assert w1.expect(wire.Fenced) == wire.Fenced(1, 5)
    assert w1.expect(wire.Deliver) == wire.Deliver(2, b"b")


def test_a_fence_waits_behind_its_peers_parked_messages(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(resync_grace=0.3, expected_workers=9)
    w1 = workers(endpoint, "w1")
    w1.hello()
    w1.send(wire.Join(1, "r"), wire.Relay(1, b"alone"), wire.Fence(1, 1))
    assert w1.expect(wire.Joined, timeout=2) == wire.Joined(1, "r", 1, False, 0)
    assert w1.expect(wire.NoPeer) == wire.NoPeer(1)
    assert w1.expect(wire.Fenced) == wire.Fenced(1, 1)


def test_a_worker_holds_no_more_peers_than_it_announced(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(max_peers_per_worker=100)
    w1 = workers(endpoint, "w1")
    w1.send(wire.Hello([], max_peers=2))
    w1.expect(wire.Welcome)
    w1.send(*(wire.Join(peer, f"room-{peer}") for peer in range(1, 5)))
    assert [w1.expect(wire.Joined).peer for _ in range(2)] == [1, 2]
    assert w1.expect(wire.RoomFull) == wire.RoomFull(3, "room-3", over_cap=True)
    assert w1.expect(wire.RoomFull) == wire.RoomFull(4, "room-4", over_cap=True)
    # A freed slot can be taken again; rejoining one's own room is no new slot.
    w1.send(wire.Leave(1), wire.Join(2, "room-2"), wire.Join(5, "room-5"))
    w1.expect(wire.Left)
    assert w1.expect(wire.Joined).peer == 2
    assert w1.expect(wire.Joined).peer == 5


def test_a_batch_of_50000_joins_from_one_identity_cannot_squat_rooms(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    # The attack of issue 14: Hello from a few lines of pyzmq, then 50,000 rooms at once,
    # announcing no cap at all.  The router's own cap still holds.
    router, endpoint = start_router(max_peers_per_worker=1000, heartbeat_interval=1.0)
    attacker, victim = workers(endpoint, "attacker"), workers(endpoint, "victim")
    attacker.send(wire.Hello([], max_peers=0))
    attacker.expect(wire.Welcome)
    attacker.send(*(wire.Join(peer, f"room-{peer}") for peer in range(1, 50_001)))
    joined = refused = 0
    while joined + refused < 50_000:
        msg = attacker.expect(wire.Joined | wire.RoomFull, timeout=30)  # type: ignore[arg-type]
        if isinstance(msg, wire.RoomFull):
            assert msg.over_cap
            refused += 1
        else:
            joined += 1
    assert (joined, refused) == (1000, 49_000)
    assert router.rooms.count_of_worker(b"attacker") == 1000
    victim.hello()
    victim.send(wire.Join(1, "room-20000"))  # a room the attacker asked for: still free
    assert victim.expect(wire.Joined).peers == 1


def test_a_hello_registers_no_more_peers_than_the_cap(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(max_peers_per_worker=3)
    w1 = workers(endpoint, "w1")
    records = [wire.PeerRecord(peer, f"room-{peer}", False) for peer in range(1, 6)]
    assert w1.hello(*records).refused == [4, 5]


def test_a_dropped_worker_back_after_the_grace_gets_its_paired_peers_refused(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    # A partition: the router dropped w1 (here: it said Bye) and told w2's peer its
    # partner left.  When w1 comes back listing that peer as paired, the router does
    # not quietly pair them again (w2's client was told its partner left): the peer
    # is refused, its client reconnects as a newcomer, and the pair renegotiates.
    _, endpoint = start_router()
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    pair_up(w1, w2)
    w1.send(wire.Bye())
    assert w2.expect(wire.PeerLeft) == wire.PeerLeft(1, "r", 1)
    welcome = w1.hello(wire.PeerRecord(1, "r", True), wire.PeerRecord(2, "alone", False))
    assert (welcome.rejected, welcome.refused) == ([], [1])
    # A Hello it sent before it heard that (queued behind the partition) is refused too.
    assert w1.hello(wire.PeerRecord(1, "r", True)).refused == [1]
    w1.send(wire.Relay(1, b"ghost?"))
    assert w2.quiet(0.3), "the refused peer is not w2's partner"
    w1.send(wire.Join(3, "r"))  # its client, reconnected
    assert w1.expect(wire.Joined) == wire.Joined(3, "r", 2, True, 0)
    assert w2.expect(wire.PeerJoined) == wire.PeerJoined(1, "r", 2, 0)


# --- late re-registrations: a worker's first Hello after the resync grace ------------------


def after_the_grace(router: Router, worker: FakeWorker) -> None:
    """Wait (heartbeating ``worker``) until ``router``'s resync grace is over."""
    deadline = time.monotonic() + 5
    while router._in_grace:
        assert time.monotonic() < deadline, "the resync grace never ended"
        worker._fill(0.02)


def test_a_late_paired_peer_whose_partner_is_gone_is_told_after_its_wait(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    # w1 came back in time without its peer (it left while the router was away);
    # w2 re-registers the partner late.
    router, endpoint = start_router(resync_grace=0.3, heartbeat_liveness=100)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    w1.hello()
    after_the_grace(router, w1)
    welcome = w2.hello(wire.PeerRecord(1, "r", True))
    assert (welcome.rejected, welcome.refused) == ([], [])
    assert w2.expect(wire.PeerLeft, timeout=2) == wire.PeerLeft(1, "r", 1)
    assert router.rooms.counts() == (1, 1)
    w1.send(wire.Join(5, "r"))  # a newcomer finds it alone and is its partner now
    assert w1.expect(wire.Joined) == wire.Joined(5, "r", 2, True)
    assert w2.expect(wire.PeerJoined) == wire.PeerJoined(1, "r", 2)
    assert w1.quiet(0.4) and w2.quiet(0.1), "told once, nothing more"


def test_a_late_peer_whose_partner_was_told_it_left_is_refused(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(resync_grace=0.3, heartbeat_liveness=100)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    w1.hello(wire.PeerRecord(1, "r", True))
    assert w1.expect(wire.PeerLeft, timeout=2) == wire.PeerLeft(1, "r", 1)  # the grace ended
    welcome = w2.hello(wire.PeerRecord(1, "r", True), wire.PeerRecord(2, "s", True))
    assert (welcome.rejected, welcome.refused) == ([], [1])  # 2 waits for its partner
    w2.send(wire.Relay(1, b"ghost?"))
    assert w1.quiet(0.3), "the refused peer is not w1's partner"
    assert router.rooms.room_of((b"w2", 1)) is None
    assert router.rooms.counts() == (2, 2)
    assert w2.expect(wire.PeerLeft, timeout=2) == wire.PeerLeft(2, "s", 1)  # nobody came
    w2.send(wire.Join(3, "r"))  # its client, reconnected as a newcomer
    assert w2.expect(wire.Joined) == wire.Joined(3, "r", 2, True)
    assert w1.expect(wire.PeerJoined) == wire.PeerJoined(1, "r", 2)


def test_both_halves_of_a_pair_late_together_stay_paired_and_nobody_is_told(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    # Both workers missed the grace (their reconnect backoff outlasted it), within
    # one wait of each other: their split pair and a pair local to w2 are whole again.
    router, endpoint = start_router(resync_grace=1.0, heartbeat_liveness=100)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    w0 = workers(endpoint, "w0")
    w0.hello()
    after_the_grace(router, w0)
    assert w1.hello(wire.PeerRecord(1, "r", True)).refused == []
    local = (wire.PeerRecord(2, "local", True), wire.PeerRecord(3, "local", True))
    assert w2.hello(wire.PeerRecord(1, "r", True), *local).refused == []
    assert router.rooms.partner((b"w1", 1)) == (b"w2", 1)
    assert router.rooms.partner((b"w2", 2)) == (b"w2", 3)
    w2.send(wire.Relay(1, b"together again"))
    assert w1.expect(wire.Deliver) == wire.Deliver(1, b"together again")
    assert w1.quiet(1.5) and w2.quiet(0.1), "a pair that is whole again is told nothing"


def test_a_newcomer_ends_a_late_peers_wait_and_its_partner_is_then_refused(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(resync_grace=5.0, expected_workers=1, heartbeat_liveness=100)
    w1, w2, w3 = (workers(endpoint, name) for name in ("w1", "w2", "w3"))
    w1.hello()  # the one expected worker: the grace ends at once
    after_the_grace(router, w1)
    w2.hello(wire.PeerRecord(1, "r", True))  # waits up to 5 s for its partner
    w1.send(wire.Join(5, "r"))
    assert w1.expect(wire.Joined) == wire.Joined(5, "r", 2, True)
    assert w2.expect(wire.PeerLeft) == wire.PeerLeft(1, "r", 1)  # first: its partner is gone
    assert w2.expect(wire.PeerJoined) == wire.PeerJoined(1, "r", 2)
    assert w3.hello(wire.PeerRecord(1, "r", True)).rejected == [1]  # the old one: room full
    assert router.rooms.counts() == (1, 2)
    assert w2.quiet(0.3), "told once"


def test_a_late_peer_that_was_alone_takes_only_an_empty_room(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(resync_grace=0.3, heartbeat_liveness=100)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    w1.hello(wire.PeerRecord(1, "r", False))
    after_the_grace(router, w1)
    # Each client thinks it is alone: paired quietly, neither would make the offer.
    welcome = w2.hello(wire.PeerRecord(1, "r", False), wire.PeerRecord(2, "s", False))
    assert (welcome.rejected, welcome.refused) == ([], [1])
    assert router.rooms.partner((b"w1", 1)) is None
    assert router.rooms.room_of((b"w2", 2)) == "s"
    assert w1.quiet(0.4) and w2.quiet(0.1)


def test_a_late_peer_that_leaves_while_it_waits_is_not_told(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(resync_grace=0.3, heartbeat_liveness=100)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    w1.hello()
    after_the_grace(router, w1)
    w2.hello(wire.PeerRecord(1, "r", True))
    w2.send(wire.Leave(1))
    assert w2.expect(wire.Left) == wire.Left(1)
    w2.hello(wire.PeerRecord(1, "r", False))  # (the same id, alone: not a late Hello)
    assert w2.quiet(0.6), "a peer that left stopped waiting"
    assert router.rooms.counts() == (1, 1)


def test_a_late_resumable_peer_lost_while_it_waits_is_told_on_its_resume(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(resync_grace=0.3, resume_grace=5.0, heartbeat_liveness=100)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    w1.hello()
    after_the_grace(router, w1)
    w2.hello(wire.PeerRecord(1, "r", True, "a-token-from-the-old-router"))
    w2.send(wire.Lost(1))  # its socket dropped while it waited for its partner
    assert w2.expect(wire.Left) == wire.Left(1)
    assert w2.quiet(0.5), "nobody to tell while it is away"
    w1.send(wire.Resume(4, "r", "a-token-from-the-old-router"))
    assert w1.expect(wire.Resumed).peers == 1
    assert w1.expect(wire.PeerLeft) == wire.PeerLeft(4, "r", 1)  # held for it: its partner is gone
    assert w1.quiet(0.5), "told once"


# --- resume (mcp_tornado.router.suspended) ----------------------------------------------


def resumable_pair(first: FakeWorker, second: FakeWorker, room: str = "r") -> tuple[str, str]:
    """Like :func:`pair_up`, both peers resumable; returns their tokens."""
    first.hello()
    second.hello()
    first.send(wire.Join(1, room, True))
    token_a = first.expect(wire.Joined).resume
    second.send(wire.Join(1, room, True))
    joined = second.expect(wire.Joined)
    first.expect(wire.PeerJoined)
    assert token_a and joined.resume and joined.resume_grace > 0
    return token_a, joined.resume


def test_a_lost_peer_is_suspended_held_for_and_resumed_on_another_worker(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(resume_grace=5.0)
    w1, w2, w3 = workers(endpoint, "w1"), workers(endpoint, "w2"), workers(endpoint, "w3")
    w3.hello()
    token, _ = resumable_pair(w1, w2)
    w1.send(wire.Lost(1))
    assert w1.expect(wire.Left) == wire.Left(1)
    assert w2.expect(wire.PeerReconnecting) == wire.PeerReconnecting(1, "r")
    w2.send(*(wire.Relay(1, f"m{n}".encode()) for n in range(5)))
    assert w2.quiet(), "held: no no_peer, nothing delivered"
    w3.send(wire.Resume(4, "r", token))
    resumed = w3.expect(wire.Resumed)
    assert (resumed.peer, resumed.room, resumed.peers, resumed.initiator) == (4, "r", 2, False)
    assert resumed.resume not in ("", token)
    assert [w3.expect(wire.Deliver) for _ in range(5)] == [
        wire.Deliver(4, f"m{n}".encode()) for n in range(5)
    ]
    assert w2.expect(wire.PeerResumed) == wire.PeerResumed(1, "r")
    w2.send(wire.Relay(1, b"after"))
    assert w3.expect(wire.Deliver) == wire.Deliver(4, b"after")
    w3.send(wire.Relay(4, b"back"))
    assert w2.expect(wire.Deliver) == wire.Deliver(1, b"back")
    assert w3.quiet() and w1.quiet(), "delivered once"
    # The token was spent: a replay is refused.
    w3.send(wire.Resume(5, "r", token))
    assert w3.expect(wire.ResumeRefused) == wire.ResumeRefused(5)
    book = router.resumes
    assert (book.suspensions, book.resumed, book.refused, book.expired) == (1, 1, 1, 0)


def test_forged_and_other_room_tokens_are_refused(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(resume_grace=5.0)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    token, _ = resumable_pair(w1, w2)
    w1.send(wire.Lost(1))
    w1.expect(wire.Left)
    w2.send(wire.Resume(2, "other", token), wire.Resume(3, "r", token[:-1] + "A"))
    assert w2.expect(wire.PeerReconnecting).peer == 1
    assert w2.expect(wire.ResumeRefused) == wire.ResumeRefused(2)
    assert w2.expect(wire.ResumeRefused) == wire.ResumeRefused(3)


def test_the_grace_ends_in_leave_and_a_free_slot(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(resume_grace=0.3)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    token, _ = resumable_pair(w1, w2)
    w1.send(wire.Lost(1))
    w1.expect(wire.Left)
    w2.expect(wire.PeerReconnecting)
    w2.send(wire.Relay(1, b"held then dropped"))
    assert w2.expect(wire.PeerLeft, timeout=3) == wire.PeerLeft(1, "r", 1)
    assert router.resumes.expired == 1
    w1.send(wire.Resume(2, "r", token))
    assert w1.expect(wire.ResumeRefused) == wire.ResumeRefused(2)
    w1.send(wire.Join(3, "r"))
    assert w1.expect(wire.Joined).peers == 2


def test_over_the_hold_bound_the_slot_is_freed(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(resume_grace=30.0, resume_hold_messages=3)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    token, _ = resumable_pair(w1, w2)
    w1.send(wire.Lost(1))
    w1.expect(wire.Left)
    w2.expect(wire.PeerReconnecting)
    w2.send(*(wire.Relay(1, b"x") for _ in range(3)))
    assert w2.quiet()
    w2.send(wire.Relay(1, b"one too many"))
    assert w2.expect(wire.PeerLeft) == wire.PeerLeft(1, "r", 1)
    w1.send(wire.Resume(2, "r", token))
    assert w1.expect(wire.ResumeRefused) == wire.ResumeRefused(2)


def test_a_clean_leave_and_a_plain_peer_are_not_suspended(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(resume_grace=5.0)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    token, _ = resumable_pair(w1, w2)
    w1.send(wire.Leave(1))
    assert w2.expect(wire.PeerLeft) == wire.PeerLeft(1, "r", 1)
    w1.expect(wire.Left)
    w1.send(wire.Resume(2, "r", token))
    assert w1.expect(wire.ResumeRefused) == wire.ResumeRefused(2)
    w1.send(wire.Join(3, "r"))  # not resumable: no token, and a Lost frees it at once
    assert w1.expect(wire.Joined).resume == ""
    w2.expect(wire.PeerJoined)
    w1.send(wire.Lost(3))
    assert w2.expect(wire.PeerLeft) == wire.PeerLeft(1, "r", 1)


def test_a_dead_workers_resumable_peers_are_suspended(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(resume_grace=5.0)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    token, _ = resumable_pair(w1, w2)
    w1.send(wire.Join(2, "plain"))  # not resumable: freed as before
    w1.expect(wire.Joined)
    w2.send(wire.Join(2, "plain"))
    w2.expect(wire.Joined)
    w1.expect(wire.PeerJoined)
    w1.send(wire.Bye())
    got = {type(w2.expect(wire.PeerReconnecting | wire.PeerLeft)) for _ in range(2)}  # type: ignore[arg-type]
    assert got == {wire.PeerReconnecting, wire.PeerLeft}
    w2.send(wire.Resume(9, "r", token))
    assert w2.expect(wire.Resumed).local_partner == 1, "now both on w2"
    assert w2.expect(wire.PeerResumed) == wire.PeerResumed(1, "r", 9)


def test_a_resume_while_the_old_socket_lives_replaces_it(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(resume_grace=5.0)
    w1, w2, w3 = workers(endpoint, "w1"), workers(endpoint, "w2"), workers(endpoint, "w3")
    w3.hello()
    token, _ = resumable_pair(w1, w2)
    w3.send(wire.Resume(1, "r", token))
    assert w3.expect(wire.Resumed).peers == 2
    assert w1.expect(wire.Replaced) == wire.Replaced(1)
    assert w2.quiet(), "its partner never saw it away"
    w2.send(wire.Relay(1, b"to the new socket"))
    assert w3.expect(wire.Deliver) == wire.Deliver(1, b"to the new socket")
    w1.send(wire.Relay(1, b"late, from the old socket"), wire.Lost(1))
    w1.expect(wire.Left)
    assert w2.quiet(), "the old socket no longer holds the slot"


def test_suspended_peers_are_lost_with_a_restarted_router_and_their_partners_told(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    _, endpoint = start_router(resume_grace=5.0, resync_grace=0.3)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    token, token_b = resumable_pair(w1, w2)
    # A fresh router at the same place: w2 re-registers its live peer (paired, with its
    # token); w1's peer was suspended in the old router only.
    _, endpoint2 = start_router(resume_grace=5.0, resync_grace=0.3)
    w2b = workers(endpoint2, "w2")
    w2b.hello(wire.PeerRecord(1, "r", True, token_b))
    assert w2b.expect(wire.PeerLeft, timeout=3) == wire.PeerLeft(1, "r", 1)
    w1b = workers(endpoint2, "w1")
    w1b.hello()
    w1b.send(wire.Resume(5, "r", token))
    assert w1b.expect(wire.ResumeRefused) == wire.ResumeRefused(5)
    # The live peer's token was relearnt: it can still be suspended and resumed.
    w2b.send(wire.Lost(1))
    w2b.expect(wire.Left)
    w1b.send(wire.Resume(6, "r", token_b))
    assert w1b.expect(wire.Resumed).peers == 1


def test_a_hung_worker_that_wakes_within_the_grace_gets_its_peers_back(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    router, endpoint = start_router(heartbeat_liveness=3, resume_grace=5.0)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    _, token = resumable_pair(w1, w2)
    started = time.monotonic()
    while True:  # w1 keeps heartbeating, w2 goes silent
        w1.send(wire.Ping("w1"))
        w1._fill(0.02)
        if w1.inbox:
            break
        assert time.monotonic() - started < 2, "silent worker was never dropped"
    assert w1.expect(wire.PeerReconnecting) == wire.PeerReconnecting(1, "r")
    w1.send(wire.Relay(1, b"while w2 slept"))
    # w2 wakes: its stale batch earns a Reregister, its Hello lists the peer and its token.
    w2.send(wire.Relay(1, b"stale"))
    assert w2.expect(wire.Reregister) == wire.Reregister([1])
    w2.send(wire.Hello([wire.PeerRecord(1, "r", True, token)]))
    got: list[object] = []
    while not got or type(got[-1]) is not wire.Welcome:
        got.append(w2.expect(object))
    got = [m for m in got if type(m) is not wire.Reregister]  # (answers to its pings)
    assert got == [wire.Deliver(1, b"while w2 slept"), wire.Welcome(router.epoch, [])]
    assert w1.expect(wire.PeerResumed) == wire.PeerResumed(1, "r")
    assert router.rooms.partner((b"w2", 1)) == (b"w1", 1)
    w1.send(wire.Relay(1, b"awake"))
    assert w2.expect(wire.Deliver) == wire.Deliver(1, b"awake")


def test_a_resume_onto_a_worker_at_its_cap_is_turned_away_and_keeps_its_token(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    # As a join over the cap: RoomFull(over_cap), which the worker closes with 1013.
    # The suspended slot and its token stay, so the client resumes through another worker.
    _, endpoint = start_router(resume_grace=5.0)
    w1, w2, full = workers(endpoint, "w1"), workers(endpoint, "w2"), workers(endpoint, "full")
    token, _ = resumable_pair(w1, w2)
    full.send(wire.Hello([], max_peers=1), wire.Join(1, "elsewhere"))
    full.expect(wire.Welcome)
    full.expect(wire.Joined)
    w1.send(wire.Lost(1))
    w1.expect(wire.Left)
    w2.expect(wire.PeerReconnecting)
    full.send(wire.Resume(2, "r", token))
    assert full.expect(wire.RoomFull) == wire.RoomFull(2, "r", over_cap=True)
    assert w2.quiet(), "its partner still waits for it"
    w1.send(wire.Resume(3, "r", token))
    assert w1.expect(wire.Resumed).peer == 3
    assert w2.expect(wire.PeerResumed) == wire.PeerResumed(1, "r")


def test_a_dropped_worker_gets_its_suspended_peers_back_and_its_plain_paired_ones_refused(
    start_router: RouterFactory, workers: Callable[[str, str], FakeWorker]
) -> None:
    # Resume and the partition rule together: the router dropped w1 (it said Bye).
    # Its resumable peer was suspended (its partner heard "reconnecting"), so it is
    # taken back; its plain paired peer's partner heard "left", so it is refused.
    _, endpoint = start_router(resume_grace=5.0)
    w1, w2 = workers(endpoint, "w1"), workers(endpoint, "w2")
    token, _ = resumable_pair(w1, w2)
    w1.send(wire.Join(2, "plain"))
    w1.expect(wire.Joined)
    w2.send(wire.Join(2, "plain"))
    w2.expect(wire.Joined)
    w1.expect(wire.PeerJoined)
    w1.send(wire.Bye())
    assert w2.expect(wire.PeerLeft) == wire.PeerLeft(2, "plain", 1)
    assert w2.expect(wire.PeerReconnecting) == wire.PeerReconnecting(1, "r")
    welcome = w1.hello(wire.PeerRecord(1, "r", True, token), wire.PeerRecord(2, "plain", True))
    assert (welcome.rejected, welcome.refused) == ([], [2])
    assert w2.expect(wire.PeerResumed) == wire.PeerResumed(1, "r")
    w2.send(wire.Relay(1, b"hello again"))
    assert w1.expect(wire.Deliver) == wire.Deliver(1, b"hello again")
