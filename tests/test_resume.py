"""Resume (``?resumable=1``, ``?resume=TOKEN``) on real router and worker processes.

A resumable peer whose socket drops without a goodbye keeps its slot for the
resume grace; its partner is told ``peer-reconnecting`` (not ``leave``), what
it sends meanwhile is held by the router and delivered, in order and once, to
the peer when it resumes on any worker.  See the README's "Resume".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rawws import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    Closed,
    Frame,
    RawWebSocket,
    encode_frame,
    upgrade_request,
)
from tests.support import Cluster

HOLD = 30  # --resume-hold-messages of the shared cluster


def fresh() -> str:
    return f"resume-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def cluster_of(tmp: Path, workers: int = 2, *router_args: str) -> Iterator[Cluster]:
    tmp.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(
        tmp, workers, router_args=router_args, worker_args=("--max-connections-per-ip", "0")
    )
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two workers, the default grace, a small hold bound; the tests here do not harm it."""
    with cluster_of(
        tmp_path_factory.mktemp("shared"), 2, "--resume-hold-messages", str(HOLD)
    ) as cluster:
        yield cluster


def connect(cluster: Cluster, worker: int, query: str) -> RawWebSocket:
    return RawWebSocket.connect(cluster.ports[worker], "?" + query, timeout=10)


def resumable_pair(
    cluster: Cluster, room: str, wa: int = 0, wb: int = 1
) -> tuple[RawWebSocket, str, RawWebSocket, str]:
    """A on ``wa`` then B on ``wb``, both resumable; with their tokens."""
    a = connect(cluster, wa, f"room={room}&resumable=1")
    joined_a = a.recv_type("joined")
    b = connect(cluster, wb, f"room={room}&resumable=1")
    joined_b = b.recv_type("joined")
    assert a.recv_json() == {"type": "peer-joined", "room": room, "peers": 2}
    assert joined_a["resumeGrace"] > 0 and joined_b["peers"] == 2
    return a, joined_a["resume"], b, joined_b["resume"]


def cut(ws: RawWebSocket) -> None:
    """Drop the TCP connection with a reset: no close frame, no FIN handshake."""
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.sock.close()


def refused(cluster: Cluster, worker: int, query: str) -> tuple[dict[str, Any], int | None]:
    ws = RawWebSocket.handshake(cluster.ports[worker], "/ws/signal/?" + query, timeout=10)
    try:
        assert ws.status == 101, "the refusal comes after the upgrade, like room_full"
        return ws.recv_json(10), ws.wait_closed(10)
    finally:
        ws.sock.close()


def quiet(ws: RawWebSocket, seconds: float = 0.3) -> bool:
    try:
        ws.recv_frame(seconds)
    except TimeoutError:
        return True
    return False


# --- one pair at a time --------------------------------------------------------------------


def test_resume_on_the_other_worker_delivers_what_was_held_in_order_once(
    shared: Cluster,
) -> None:
    room = fresh()
    a, token, b, _ = resumable_pair(shared, room, 0, 1)
    a.send_json({"type": "offer", "sdp": "before"})
    assert b.recv_json()["sdp"] == "before"
    cut(a)
    assert b.recv_json(10) == {"type": "peer-reconnecting", "room": room}
    for n in range(20):
        b.send_json({"type": "candidate", "n": n})
    assert quiet(b), "held: neither no_peer nor leave"
    a2 = connect(shared, 1, f"room={room}&resume={token}")
    resumed = a2.recv_json()
    assert resumed["type"] == "resumed" and resumed["room"] == room
    assert (resumed["peers"], resumed["initiator"]) == (2, False)
    assert resumed["resume"] not in ("", token) and resumed["resumeGrace"] == 10.0
    assert [a2.recv_json()["n"] for _ in range(20)] == list(range(20))
    assert quiet(a2), "delivered once"
    assert b.recv_json() == {"type": "peer-resumed", "room": room}
    a2.send_json({"type": "answer", "sdp": "after"})
    assert b.recv_json()["sdp"] == "after"
    b.send_json({"type": "candidate", "n": 20})
    assert a2.recv_json()["n"] == 20
    # The new token works again (a second drop, back on the first worker).
    cut(a2)
    assert b.recv_json(10)["type"] == "peer-reconnecting"
    a3 = connect(shared, 0, f"room={room}&resume={resumed['resume']}")
    assert a3.recv_json()["type"] == "resumed"
    assert b.recv_json()["type"] == "peer-resumed"
    for ws in (a3, b):
        ws.close()


def test_used_forged_and_other_room_tokens_are_refused_with_4410(shared: Cluster) -> None:
    room = fresh()
    a, token, b, _ = resumable_pair(shared, room)
    cut(a)
    b.recv_type("peer-reconnecting", 10)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for query in (f"room={room}&resume={forged}", f"room={fresh()}&resume={token}"):
        error, code = refused(shared, 0, query)
        assert error["type"] == "error" and error["code"] == "invalid_resume"
        assert code == 4410
    a2 = connect(shared, 0, f"room={room}&resume={token}")
    assert a2.recv_json()["type"] == "resumed"
    error, code = refused(shared, 1, f"room={room}&resume={token}")  # replayed
    assert (error["code"], code) == ("invalid_resume", 4410)
    assert b.recv_json()["type"] == "peer-resumed"
    b.send_json({"type": "offer", "sdp": "still one slot each"})
    assert a2.recv_json()["sdp"] == "still one slot each"
    a2.close()
    b.close()


def test_over_the_hold_bound_the_partner_gets_leave_and_the_slot_is_freed(
    shared: Cluster,
) -> None:
    room = fresh()
    a, token, b, _ = resumable_pair(shared, room)
    cut(a)
    b.recv_type("peer-reconnecting", 10)
    for n in range(HOLD + 1):
        b.send_json({"type": "candidate", "n": n})
    assert b.recv_json(10) == {"type": "leave"}
    assert b.recv_json() == {"type": "peer-left", "room": room, "peers": 1}
    error, code = refused(shared, 0, f"room={room}&resume={token}")
    assert (error["code"], code) == ("invalid_resume", 4410)
    newcomer = connect(shared, 0, f"room={room}")
    assert newcomer.recv_type("joined")["peers"] == 2
    newcomer.close()
    b.close()


def test_a_clean_goodbye_is_not_resumable(shared: Cluster) -> None:
    # A close frame with 1000 (or 1001, or none): gone at once, as before.
    room = fresh()
    a, token, b, _ = resumable_pair(shared, room)
    a.close()  # 1000
    assert b.recv_json(10) == {"type": "leave"}
    assert b.recv_json()["type"] == "peer-left"
    error, code = refused(shared, 1, f"room={room}&resume={token}")
    assert (error["code"], code) == ("invalid_resume", 4410)
    b.close()
    # A leave frame, then the socket drops: gone at once too.
    room = fresh()
    a, token, b, _ = resumable_pair(shared, room)
    a.send_json({"type": "leave"})
    assert b.recv_json(10) == {"type": "leave"}  # the relayed frame
    cut(a)
    assert b.recv_json(10) == {"type": "leave"}  # the server's, at once: no grace
    assert b.recv_json()["type"] == "peer-left"
    error, code = refused(shared, 1, f"room={room}&resume={token}")
    assert (error["code"], code) == ("invalid_resume", 4410)
    b.close()


def test_a_close_with_another_code_suspends(shared: Cluster) -> None:
    room = fresh()
    a, token, b, _ = resumable_pair(shared, room)
    a.send_raw(encode_frame(CLOSE, struct.pack("!H", 4000)))
    assert a.wait_closed() == 4000  # the echo: the slot is suspended, not freed
    a.sock.close()
    assert b.recv_json(10) == {"type": "peer-reconnecting", "room": room}
    a2 = connect(shared, 1, f"room={room}&resume={token}")
    assert a2.recv_json()["type"] == "resumed"
    a2.close()
    b.close()


def test_a_resume_while_the_old_socket_lives_closes_the_old_one_with_4411(
    shared: Cluster,
) -> None:
    room = fresh()
    a, token, b, _ = resumable_pair(shared, room, 0, 1)
    a2 = connect(shared, 1, f"room={room}&resume={token}")
    assert a2.recv_json()["type"] == "resumed"
    assert a.wait_closed(10) == 4411
    a.sock.close()
    assert quiet(b), "its partner never saw it away"
    b.send_json({"type": "offer", "sdp": "to the new socket"})
    assert a2.recv_json()["sdp"] == "to the new socket"
    a2.close()
    b.close()


def test_clients_that_do_not_ask_see_the_original_behaviour(shared: Cluster) -> None:
    room = fresh()
    a = connect(shared, 0, f"room={room}")
    assert a.recv_json() == {"type": "joined", "room": room, "peers": 1, "initiator": False}
    b = connect(shared, 1, f"room={room}&resumable=1")
    joined = b.recv_json()
    assert joined["type"] == "joined" and joined["resume"]
    a.recv_type("peer-joined")
    cut(a)
    assert b.recv_json(10) == {"type": "leave"}, "a plain peer is freed at once"
    b.close()


# --- with settings or faults of their own --------------------------------------------------


def test_after_the_grace_the_partner_gets_leave_and_the_token_is_refused(
    tmp_path: Path,
) -> None:
    with cluster_of(tmp_path, 2, "--resume-grace", "0.5") as cluster:
        room = fresh()
        a, token, b, _ = resumable_pair(cluster, room)
        cut(a)
        started = time.monotonic()
        assert b.recv_json(10) == {"type": "peer-reconnecting", "room": room}
        assert b.recv_json(10) == {"type": "leave"}
        assert b.recv_json() == {"type": "peer-left", "room": room, "peers": 1}
        assert 0.3 < time.monotonic() - started < 5
        error, code = refused(cluster, 1, f"room={room}&resume={token}")
        assert (error["code"], code) == ("invalid_resume", 4410)
        newcomer = connect(cluster, 0, f"room={room}")
        assert newcomer.recv_type("joined")["peers"] == 2
        newcomer.close()
        b.close()


def test_a_client_that_stops_answering_pings_is_suspended_and_can_resume(
    tmp_path: Path,
) -> None:
    """A phone that switched networks: its old socket goes silent, the ping timeout drops it."""
    pings = ("--ping-interval", "0.2", "--ping-timeout", "0.4", "--max-connections-per-ip", "0")
    tmp_path.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(tmp_path, 2, worker_args=pings)
    try:
        cluster.start()
        room = fresh()
        b, _, ghost, token = resumable_pair(cluster, room, 0, 1)
        started = time.monotonic()  # the ghost reads (and answers pings) no more
        assert b.recv_json(10) == {"type": "peer-reconnecting", "room": room}
        assert time.monotonic() - started < 5
        b.send_json({"type": "candidate", "n": 0})
        a2 = connect(cluster, 0, f"room={room}&resume={token}")
        assert a2.recv_json()["type"] == "resumed"
        assert a2.recv_json() == {"type": "candidate", "n": 0}
        assert b.recv_json() == {"type": "peer-resumed", "room": room}
        ghost.sock.close()
        a2.close()
        b.close()
    finally:
        cluster.stop()


def test_sigterm_to_a_worker_lets_its_resumable_peers_resume_elsewhere(tmp_path: Path) -> None:
    with cluster_of(tmp_path, 2) as cluster:
        room = fresh()
        b, _, a, token = resumable_pair(cluster, room, 0, 1)  # a on the worker stopped
        cluster.workers[1].send_signal(signal.SIGTERM)
        assert a.wait_closed(10) == 1001
        a.sock.close()
        assert b.recv_json(10) == {"type": "peer-reconnecting", "room": room}
        a2 = connect(cluster, 0, f"room={room}&resume={token}")
        resumed = a2.recv_json()
        assert resumed["type"] == "resumed" and resumed["initiator"] is True
        assert b.recv_json() == {"type": "peer-resumed", "room": room}
        b.send_json({"type": "offer", "sdp": "after the restart"})
        assert a2.recv_json()["sdp"] == "after the restart"
        a2.close()
        b.close()


def test_a_router_restart_loses_suspended_peers_and_their_partners_get_leave(
    tmp_path: Path,
) -> None:
    """Documented: suspended slots live in the router only.  Live resumable peers are
    re-registered with their tokens, so they stay resumable."""
    with cluster_of(tmp_path, 2) as cluster:
        assert cluster.router is not None
        room = fresh()
        a, token, b, token_b = resumable_pair(cluster, room, 0, 1)
        cut(a)
        assert b.recv_json(10)["type"] == "peer-reconnecting"
        cluster.router.send_signal(signal.SIGKILL)
        cluster.router.wait(5)
        cluster.start_router()
        # After the resync grace (0.3 s here) B's partner has not come back.
        assert b.recv_json(10) == {"type": "leave"}
        assert b.recv_json() == {"type": "peer-left", "room": room, "peers": 1}
        error, code = refused(cluster, 0, f"room={room}&resume={token}")
        assert (error["code"], code) == ("invalid_resume", 4410)
        # B's token survived the restart (its worker re-registered it).
        cut(b)
        b2 = connect(cluster, 0, f"room={room}&resume={token_b}")
        assert b2.recv_json()["type"] == "resumed"
        b2.close()


# --- kill -9 of a worker under 200 resumable peers -----------------------------------------


class Peer:
    """An asyncio raw WebSocket client that sends numbered messages and resumes when cut."""

    def __init__(self, name: str, room: str, port: int, fallback: int) -> None:
        self.name = name
        self.room = room
        self.port = port
        self.fallback = fallback  # the worker to resume on
        self.token = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.received: list[int] = []
        self.events: list[str] = []
        self.sent = 0
        self.guaranteed_from: int | None = None  # first number sent once safe
        self.resumed_at: float | None = None
        self.open = asyncio.Event()

    async def connect(self, query: str) -> dict[str, Any]:
        if self.writer is not None:
            self.writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(upgrade_request(self.port, f"/ws/signal/?{query}"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        self.reader, self.writer = reader, writer
        first = await self._next_json(10)
        assert first["type"] in ("joined", "resumed"), first
        self.token = first["resume"]
        self.open.set()
        return first

    async def _frame(self) -> Frame:
        assert self.reader is not None
        b0, b1 = await self.reader.readexactly(2)
        size = b1 & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return Frame(b0 & 0x0F, await self.reader.readexactly(size))

    async def _next_json(self, timeout: float) -> dict[str, Any]:
        while True:
            frame = await asyncio.wait_for(self._frame(), timeout)
            if frame.opcode == PING and self.writer is not None:
                self.writer.write(encode_frame(PONG, frame.payload))
            elif frame.opcode == CLOSE:
                raise Closed(frame.close_code)
            elif frame.opcode == TEXT:
                return frame.json()

    async def read_forever(self) -> None:
        """Record numbers and events; resume (with jitter) whenever the socket ends."""
        while True:
            try:
                message = await self._next_json(60)
            except (asyncio.IncompleteReadError, ConnectionError, Closed):
                self.open.clear()
                self.events.append("cut")
                await asyncio.sleep(random.uniform(0, 0.2))
                self.port = self.fallback
                await self.connect(f"room={self.room}&resume={self.token}")
                self.events.append("resumed")
                self.resumed_at = time.monotonic()
                self.guaranteed_from = self.sent  # what it sends from now on must arrive
                continue
            if message["type"] == "candidate":
                self.received.append(message["n"])
            else:
                self.events.append(message["type"])
                if message["type"] == "peer-reconnecting":
                    self.guaranteed_from = self.sent  # the router holds from now on

    async def send_forever(self, until: float) -> None:
        while time.monotonic() < until:
            await self.open.wait()
            assert self.writer is not None
            frame = json.dumps({"type": "candidate", "n": self.sent}).encode()
            self.writer.write(encode_frame(TEXT, frame))
            self.sent += 1
            await asyncio.sleep(0.1)


async def kill_under_load(cluster: Cluster) -> tuple[list[tuple[Peer, Peer]], float]:
    # 100 pairs: 40 across the workers, 30 both on the doomed worker 1, 30 both on worker 0.
    layout = [(0, 1)] * 20 + [(1, 0)] * 20 + [(1, 1)] * 30 + [(0, 0)] * 30
    pairs: list[tuple[Peer, Peer]] = []
    for i, (wa, wb) in enumerate(layout):
        room = fresh()
        a = Peer(f"{i}a", room, cluster.ports[wa], cluster.ports[0])
        b = Peer(f"{i}b", room, cluster.ports[wb], cluster.ports[0])
        await a.connect(f"room={room}&resumable=1")
        await b.connect(f"room={room}&resumable=1")
        pairs.append((a, b))
    everyone = [p for pair in pairs for p in pair]
    readers = [asyncio.ensure_future(p.read_forever()) for p in everyone]
    until = time.monotonic() + 6
    senders = [asyncio.ensure_future(p.send_forever(until)) for p in everyone]
    await asyncio.sleep(2)
    killed = time.monotonic()
    cluster.workers[1].send_signal(signal.SIGKILL)
    await asyncio.gather(*senders)
    await asyncio.sleep(2)  # the last messages arrive
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for p in everyone:
        if p.writer is not None:
            p.writer.close()
    return pairs, killed


def test_kill_9_of_a_worker_under_200_resumable_peers(tmp_path: Path) -> None:
    with cluster_of(tmp_path, 2) as cluster:
        pairs, killed = asyncio.run(kill_under_load(cluster))
        on_dead = {cluster.ports[1]}
        lost = 0
        took = []
        for a, b in pairs:
            for sender, receiver in ((a, b), (b, a)):
                got = receiver.received
                assert got == sorted(set(got)), f"{receiver.name}: duplicated or reordered"
                missing = set(range(sender.sent)) - set(got)
                safe_from = sender.guaranteed_from
                if safe_from is None:  # the pair never noticed anything: all arrive
                    assert not missing, f"{sender.name} -> {receiver.name} lost {missing}"
                else:
                    late = {n for n in missing if n >= safe_from}
                    assert not late, f"{sender.name} -> {receiver.name} lost {late}"
                    lost += len(missing)
            for peer in (a, b):
                assert "leave" not in peer.events and "peer-left" not in peer.events, peer.events
                if peer.resumed_at is not None:
                    took.append(peer.resumed_at - killed)
        dead_peers = 2 * 30 + 40
        assert len(took) == dead_peers, f"{len(took)} of {dead_peers} peers resumed"
        assert all(p.port not in on_dead for pair in pairs for p in pair)
        print(
            f"{dead_peers} peers resumed, the last {max(took):.2f}s after the kill; "
            f"{lost} messages lost in flight (sent before the sender learnt of the drop)"
        )
