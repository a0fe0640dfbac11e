"""Fault injection: real router and worker processes killed, stopped and cut mid-conversation."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mcp_tornado import status
from tests.history import History
from tests.support import Client, Cluster, ready, wait_until

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("close_clients")]

MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(tmp_path: Path, io_loop: object) -> Iterator[MakeCluster]:
    made: list[Cluster] = []

    def make(
        workers: int = 2, worker_args: tuple[str, ...] = (), router_args: tuple[str, ...] = ()
    ) -> Cluster:
        cluster = Cluster(
            tmp_path / f"c{len(made)}",
            workers=workers,
            worker_args=worker_args,
            router_args=router_args,
        )
        cluster.tmp.mkdir()
        made.append(cluster)
        return cluster.start()

    yield make
    Client.close_all()  # first, so workers are not left waiting for closing handshakes
    for cluster in made:
        cluster.stop()


def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


async def pair(cluster: Cluster, name: str, wa: int, wb: int) -> tuple[Client, Client]:
    a = await Client.connect(cluster.url(name, wa))
    await a.recv_type("joined")
    b = await Client.connect(cluster.url(name, wb))
    await b.recv_type("joined")
    await a.recv_type("peer-joined")
    return a, b


async def test_worker_killed_mid_conversation(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(workers=2)
    name = room()
    survivor, doomed = await pair(cluster, name, 0, 1)
    doomed.send({"type": "offer", "sdp": "before"})
    assert (await survivor.recv())["sdp"] == "before"
    killed = time.monotonic()
    cluster.workers[1].send_signal(signal.SIGKILL)
    assert (await survivor.recv(timeout=5)) == {"type": "leave"}
    assert (await survivor.recv()) == {"type": "peer-left", "room": name, "peers": 1}
    notified = time.monotonic() - killed
    assert notified < 2.0
    # The freed slot can be taken at once.
    newcomer = await Client.connect(cluster.url(name, 0))
    assert (await newcomer.recv_type("joined"))["peers"] == 2
    newcomer.send({"type": "offer", "sdp": "after"})
    assert (await survivor.recv_type("offer"))["sdp"] == "after"


async def test_router_killed_and_brought_back(make_cluster: MakeCluster) -> None:
    # A grace longer than the workers' reconnect backoff (as the README advises; it
    # ends once both are back): a pair split between a worker back in time and a
    # late one would be broken, not resumed (see the test below).
    cluster = make_cluster(workers=2, router_args=("--resync-grace", "3"))
    assert cluster.router is not None
    a, b = await pair(cluster, room(), 0, 1)
    cluster.router.send_signal(signal.SIGKILL)
    cluster.router.wait(5)
    # While the router is away: messages are refused with a retryable error, never lost silently.
    await asyncio.sleep(0.1)
    a.send({"type": "offer", "sdp": "during"})
    error = await a.recv()
    assert error["type"] == "error" and error["code"] == "router_unavailable"
    # New joins are refused with 1013 (try again later).
    refused = await Client.connect(cluster.url(room(), 1))
    error = await refused.recv()
    assert error["code"] == "router_unavailable"
    assert await refused.closed() == 1013
    # Existing connections stay open; when the router is back the workers resync and relay resumes.
    cluster.start_router()
    restarted = time.monotonic()
    deadline = restarted + 10
    while True:
        a.send({"type": "offer", "sdp": "after"})
        try:
            got = await b.recv(timeout=0.2)
        except TimeoutError:
            got = {}
        if got.get("sdp") == "after":
            break
        assert time.monotonic() < deadline, "relaying never resumed"
        # Drain the error frames the refused attempts produced.
        while not await a.nothing_within(0.01):
            pass
    b.send({"type": "answer", "sdp": "back"})
    assert (await a.recv_type("answer"))["sdp"] == "back"
    assert await b.nothing_within(0.2), "nothing is delivered twice"
    # And new rooms work again.
    c, d = await pair(cluster, room(), 1, 0)
    c.send({"type": "candidate", "candidate": {}})
    assert (await d.recv())["type"] == "candidate"


async def test_resync_conflict_never_puts_three_in_a_room(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(workers=2)
    name = room()
    a, b = await pair(cluster, name, 0, 0)
    # Freeze worker 0: the router gives up on it and frees room `name` ...
    cluster.workers[0].send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(1.5)  # > heartbeat liveness (tests.support.FAST)
        # ... which two newcomers on worker 1 take.
        c, d = await pair(cluster, name, 1, 1)
    finally:
        cluster.workers[0].send_signal(signal.SIGCONT)
    # Worker 0 wakes up, re-registers a and b, and loses: the room's current members win.
    assert await a.closed(5) == 4409
    assert await b.closed(5) == 4409
    c.send({"type": "offer", "sdp": "still ours"})
    assert (await d.recv_type("offer"))["sdp"] == "still ours"
    late = await Client.connect(cluster.url(name, 0))
    assert (await late.recv())["code"] == "room_full"


async def test_a_worker_back_after_the_resync_grace_leaves_no_orphan_untold(
    make_cluster: MakeCluster,
) -> None:
    # The router restarts while worker 0 is stopped: worker 1 re-registers within the
    # grace, worker 0 only after it.  Worker 0's peers are judged then (router/broker.py).
    grace = 0.5
    cluster = make_cluster(workers=2, router_args=("--resync-grace", str(grace)))
    assert cluster.router is not None
    history = History()
    told, gone, local = room(), room(), room()
    a, b = await pair(cluster, told, 0, 1)  # b's partner comes back too late
    c, d = await pair(cluster, gone, 0, 1)  # c's partner leaves while the router is away
    e, f = await pair(cluster, local, 0, 0)  # a pair on worker 0 alone
    for name, first, second in ((told, "a", "b"), (gone, "c", "d"), (local, "e", "f")):
        history.joined(name, first)
        history.joined(name, second)
    cluster.router.send_signal(signal.SIGKILL)
    cluster.router.wait(5)
    cluster.workers[0].send_signal(signal.SIGSTOP)
    try:
        d.close()
        await d.closed(5)  # (worker 1 forgets it: no router to tell)
        history.left(gone, "d")
        cluster.start_router()
        # Worker 1 is back in time; at the end of the grace b's partner has not come back.
        assert (await b.recv(timeout=10)) == {"type": "leave"}
        assert (await b.recv()) == {"type": "peer-left", "room": told, "peers": 1}
        await asyncio.sleep(grace)  # well past the grace
    finally:
        cluster.workers[0].send_signal(signal.SIGCONT)
    # a's partner was told it left: a is refused (1013) and reconnects as a newcomer.
    assert await a.closed(10) == 1013
    history.left(told, "a")
    # c's partner is gone: c is told, after waiting one grace for it.
    assert (await c.recv(timeout=10)) == {"type": "leave"}
    assert (await c.recv()) == {"type": "peer-left", "room": gone, "peers": 1}
    # The pair on worker 0 is whole, and was told nothing.
    wait_until(lambda: ready(cluster.ports[0]), 10, "worker 0 registered again")
    for n in (1, 2):
        e.send({"type": "offer", "sdp": str(n)})
        history.sent(local, "e", n)
    for _ in (1, 2):
        history.delivered(local, "f", "e", int((await f.recv_type("offer"))["sdp"]))
    assert await e.nothing_within(0.2), "a whole pair is told nothing"
    # No ghosts: b and c alone, e and f together.
    answer = status.query(cluster.endpoint)
    assert (answer.rooms, answer.peers) == (3, 4)
    again = await Client.connect(cluster.url(told, 0))
    assert (await again.recv_type("joined"))["peers"] == 2
    history.joined(told, "a again")
    assert (await b.recv_type("peer-joined"))["peers"] == 2
    third = await Client.connect(cluster.url(told, 1))
    assert (await third.recv())["code"] == "room_full"
    history.refused(told, "third", "room_full")
    assert history.violations() == []


async def test_vanished_client_is_detected_by_pings(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(
        workers=1, worker_args=("--ping-interval", "0.2", "--ping-timeout", "0.4")
    )
    name = room()
    a = await Client.connect(cluster.url(name, 0))
    await a.recv_type("joined")
    # A client that completes the handshake, then never reads or answers again:
    # as if its network vanished (no FIN, no close frame, no pongs).
    ghost = socket.create_connection(("127.0.0.1", cluster.ports[0]))
    try:
        ghost.sendall(
            (
                f"GET /ws/signal/?room={name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await a.recv_type("peer-joined")
        started = time.monotonic()
        assert (await a.recv(timeout=5)) == {"type": "leave"}
        assert time.monotonic() - started < 2
        assert (await a.recv())["type"] == "peer-left"
    finally:
        ghost.close()


async def test_sigterm_to_router_tells_workers(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(workers=1)
    assert cluster.router is not None
    a = await Client.connect(cluster.url(room(), 0))
    await a.recv_type("joined")
    cluster.router.send_signal(signal.SIGTERM)
    assert cluster.router.wait(5) == 0
    await asyncio.sleep(0.05)
    refused = await Client.connect(cluster.url(room(), 0))
    assert (await refused.recv())["code"] == "router_unavailable"
    assert await refused.closed() == 1013


async def test_numbered_messages_survive_a_worker_kill_in_order_exactly_once(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=3)
    # 100 pairs, 200 peers: 40 pairs across the two surviving workers, 60 touching the doomed one.
    layout = [(0, 1)] * 20 + [(1, 0)] * 20 + [(0, 2)] * 30 + [(2, 1)] * 30
    pairs = [await pair(cluster, room(), wa, wb) for wa, wb in layout]
    surviving = [p for p, (wa, wb) in zip(pairs, layout, strict=True) if 2 not in (wa, wb)]
    count = 200
    received: dict[int, list[int]] = {}

    async def send_all(client: Client) -> None:
        for n in range(count):
            client.send(json.dumps({"type": "candidate", "n": n}))
            if n % 20 == 0:
                await asyncio.sleep(0.005)

    async def receive_all(key: int, client: Client) -> None:
        got = received.setdefault(key, [])
        while len(got) < count:
            got.append((await client.recv_type("candidate", timeout=10))["n"])
        assert await client.nothing_within(0.1), "a message arrived twice"

    senders = [asyncio.ensure_future(send_all(c)) for p in surviving for c in p]
    receivers = [
        asyncio.ensure_future(receive_all(i * 2 + j, p[1 - j]))
        for i, p in enumerate(surviving)
        for j in (0, 1)
    ]
    await asyncio.sleep(0.05)
    cluster.workers[2].send_signal(signal.SIGKILL)
    await asyncio.gather(*senders, *receivers)
    assert len(received) == 2 * len(surviving) == 80
    for got in received.values():
        assert got == list(range(count))
    # Every peer whose partner was on the dead worker was told.
    orphans = [
        p[0] if wb == 2 else p[1]
        for p, (wa, wb) in zip(pairs, layout, strict=True)
        if 2 in (wa, wb)
    ]
    for orphan in orphans:
        assert (await orphan.recv_type("peer-left", timeout=5))["peers"] == 1


async def test_sigterm_to_one_worker_closes_its_clients_with_going_away(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(workers=2)
    name = room()
    stays, goes = await pair(cluster, name, 0, 1)
    cluster.workers[1].send_signal(signal.SIGTERM)
    assert await goes.closed() == 1001
    assert cluster.workers[1].wait(5) == 0
    assert (await stays.recv_type("leave")) == {"type": "leave"}
