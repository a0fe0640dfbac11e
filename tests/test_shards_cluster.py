"""Two router shards and two workers as real processes on ipc://: a shard dies and comes back.

Rooms of the live shard relay on; joins to the dead shard's rooms fail fast
with ``router_unavailable``/1013; the workers stay ready; when the shard comes
back its rooms are rebuilt from the workers (peers that left meanwhile stay
gone, their partners get ``leave``); three joiners per room around the
restart never put three peers in a room; and a worker with another map of
shards is refused.  The figures (detection, p99 while a shard is down,
recovery) are printed: ``pytest -s`` shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_tornado.shards import ShardMap
from tests.history import History
from tests.support import FAST, Client, free_port, spawn, stop, wait_until

pytestmark = [pytest.mark.gen_test(timeout=120), pytest.mark.usefixtures("close_clients")]

SHARDS = ShardMap(2)


class ShardCluster:
    """``shards`` routers (shard I binds ``endpoints[I]``) and workers that list them all."""

    def __init__(self, tmp: Path, shards: int = 2, workers: int = 2) -> None:
        self.tmp = tmp
        self.shards = shards
        self.endpoints = [f"ipc://{tmp}/shard{i}.ipc" for i in range(shards)]
        self.ports = [free_port() for _ in range(workers)]
        self.log = tmp / "cluster.log"
        self.routers: list[subprocess.Popen[bytes] | None] = [None] * shards
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_router(self, shard: int) -> None:
        # The grace outlasts the workers' reconnect backoff (up to 1 s), so both workers
        # are back within it and every split pair survives the restart (a worker back
        # after it has its split pairs broken: told they left, or refused).  It ends as
        # soon as both workers are back (--expected-workers).
        self.routers[shard] = spawn(
            "router", "--bind", self.endpoints[shard], "--shard", str(shard),
            "--shards", str(self.shards), "--resync-grace", "3",
            "--expected-workers", str(len(self.ports)), *FAST, log=self.log,
        )  # fmt: skip

    def start_worker(self, endpoints: list[str] | None = None) -> subprocess.Popen[bytes]:
        port = self.ports[len(self.workers)] if endpoints is None else free_port()
        routers = [arg for e in endpoints or self.endpoints for arg in ("--router", e)]
        process = spawn(
            "worker", *routers, "--port", str(port), *FAST, "--shutdown-timeout", "3",
            log=self.log,
        )  # fmt: skip
        self.workers.append(process)
        if endpoints is not None:
            self.ports.append(port)
        return process

    def start(self) -> ShardCluster:
        for shard in range(self.shards):
            self.start_router(shard)
        for _ in range(len(self.ports)):
            self.start_worker()
        for port in self.ports:
            wait_until(lambda p=port: all_shards_up(p), 20, f"worker {port} on every shard")
        return self

    def kill_router(self, shard: int) -> None:
        router = self.routers[shard]
        assert router is not None
        router.send_signal(signal.SIGKILL)
        router.wait(5)

    def url(self, room: str, worker: int) -> str:
        return f"ws://127.0.0.1:{self.ports[worker]}/ws/signal/?room={room}"

    def stop(self) -> None:
        for process in self.workers:
            stop(process)
        for router in self.routers:
            if router is not None:
                stop(router)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def shard_health(port: int) -> list[bool]:
    return [shard["ready"] for shard in readyz(port)[1].get("shards", [])]


def all_shards_up(port: int) -> bool:
    health = shard_health(port)
    return bool(health) and all(health)


def rooms_of(shard: int, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    found: list[str] = []
    i = 0
    while len(found) < n:
        room = f"{tag}-{i}"
        if SHARDS.shard_of(room) == shard:
            found.append(room)
        i += 1
    return found


@pytest.fixture
def cluster(tmp_path: Path, io_loop: object) -> Iterator[ShardCluster]:
    made = ShardCluster(tmp_path)
    try:
        yield made.start()
    finally:
        Client.close_all()
        made.stop()


async def pair(cluster: ShardCluster, room: str, wa: int, wb: int) -> tuple[Client, Client]:
    a = await Client.connect(cluster.url(room, wa))
    await a.recv_type("joined")
    b = await Client.connect(cluster.url(room, wb))
    await b.recv_type("joined")
    await a.recv_type("peer-joined")
    return a, b


async def round_trip(a: Client, b: Client, text: str) -> float:
    started = time.monotonic()
    a.send({"type": "offer", "sdp": text})
    assert (await b.recv_type("offer"))["sdp"] == text
    return time.monotonic() - started


async def numbered_traffic(
    pairs: list[tuple[Client, Client]], rooms: list[str], count: int, history: History
) -> None:
    """Each side of each pair sends ``count`` numbered messages, paced; all are awaited."""

    async def send(client: Client, room: str, me: str) -> None:
        for n in range(count):
            history.sent(room, me, n)
            client.send({"type": "candidate", "candidate": {"n": n, "from": me}})
            await asyncio.sleep(0.01)

    async def receive(client: Client, room: str, me: str) -> None:
        for _ in range(count):
            body = (await client.recv_type("candidate", timeout=15))["candidate"]
            history.delivered(room, me, body["from"], body["n"])

    tasks = []
    for room, (a, b) in zip(rooms, pairs, strict=True):
        tasks += [send(a, room, f"{room}/a"), send(b, room, f"{room}/b")]
        tasks += [receive(a, room, f"{room}/a"), receive(b, room, f"{room}/b")]
    await asyncio.gather(*tasks)


async def relays_again(a: Client, b: Client, timeout: float = 15) -> float:
    """Send until ``b`` gets one of ``a``'s messages (refusals drained); the time it took."""
    started = time.monotonic()
    while True:
        a.send({"type": "offer", "sdp": "back"})
        with contextlib.suppress(TimeoutError):
            if (await b.recv(timeout=0.2)).get("sdp") == "back":
                return time.monotonic() - started
        assert time.monotonic() - started < timeout, "relaying never resumed"
        while not await a.nothing_within(0.01):
            pass


async def test_a_dead_shard_stops_only_its_rooms_and_is_rebuilt_from_the_workers(
    cluster: ShardCluster,
) -> None:
    kept0, left0, alone0 = rooms_of(0, 3)
    rooms1 = rooms_of(1, 4)
    pairs0 = [await pair(cluster, kept0, 0, 1), await pair(cluster, left0, 1, 0)]
    pairs1 = [await pair(cluster, room, i % 2, 1 - i % 2) for i, room in enumerate(rooms1)]
    lonely = await Client.connect(cluster.url(alone0, 0))
    await lonely.recv_type("joined")
    for a, b in pairs0 + pairs1:
        await round_trip(a, b, "before")

    # Shard 1's pairs exchange numbered messages all through shard 0's death.
    history = History()
    traffic = asyncio.ensure_future(numbered_traffic(pairs1, rooms1, 150, history))
    await asyncio.sleep(0.3)
    killed = time.monotonic()
    cluster.kill_router(0)
    while not all(shard_health(port) == [False, True] for port in cluster.ports):
        assert time.monotonic() - killed < 10, "shard 0 never seen down"
        await asyncio.sleep(0.01)
    detected = time.monotonic() - killed
    for port in cluster.ports:  # ready while any shard is up, and says which is not
        status, body = readyz(port)
        assert status == 200 and [s["shard"] for s in body["shards"]] == [0, 1]

    # A join to a shard-0 room fails fast and retryably; one to a shard-1 room works.
    started = time.monotonic()
    refused = await Client.connect(cluster.url(rooms_of(0, 1)[0], 1))
    assert (await refused.recv())["code"] == "router_unavailable"
    assert await refused.closed() == 1013
    refusal = time.monotonic() - started
    newcomers = await pair(cluster, rooms_of(1, 1)[0], 1, 0)
    await traffic  # every message of shard 1's rooms arrived, once, in order
    assert history.violations() == []
    assert history.count("delivered", rooms1[0]) == 300
    # Shard 1's rooms relay on, untouched.
    times = sorted(
        [await round_trip(a, b, f"during {i}") for i in range(25) for a, b in pairs1[:2]]
        + [await round_trip(*newcomers, "new")]
    )
    p99 = times[int(len(times) * 0.99) - 1]
    # A message of a shard-0 pair is refused, not lost silently.
    pairs0[0][0].send({"type": "offer", "sdp": "during"})
    assert (await pairs0[0][0].recv())["code"] == "router_unavailable"
    # Peers leave while their shard is away.
    leaver, orphan = pairs0[1]
    leaver.close()
    lonely.close()
    await asyncio.sleep(0.3)

    restarted = time.monotonic()
    cluster.start_router(0)
    for port in cluster.ports:
        wait_until(lambda p=port: all_shards_up(p), 15, "shard 0 back")
    back = time.monotonic() - restarted
    resumed = await relays_again(*pairs0[0])
    b_to_a = await round_trip(pairs0[0][1], pairs0[0][0], "and back")
    # The orphan, whose partner left while shard 0 was away, is told.
    assert (await orphan.recv_type("leave", timeout=10)) == {"type": "leave"}
    assert (await orphan.recv_type("peer-left"))["peers"] == 1
    # Nobody who left is resurrected: the orphan's room has one free slot, the lonely one's two.
    third = await Client.connect(cluster.url(left0, 1))
    assert (await third.recv_type("joined"))["peers"] == 2
    again = await Client.connect(cluster.url(alone0, 1))
    assert (await again.recv_type("joined"))["peers"] == 1
    for a, b in pairs1:
        await round_trip(b, a, "after")
    print(
        f"\nshard 1: {len(history.events) // 2} numbered messages across the kill, each "
        f"delivered once and in order; "
        f"shard 0 killed: both workers saw it down after {detected * 1000:.0f} ms; "
        f"a join to its rooms refused (1013) in {refusal * 1000:.0f} ms; shard 1 relay "
        f"p99 {p99 * 1000:.1f} ms over {len(times)} messages while shard 0 was down; "
        f"shard 0 restarted: workers registered after {back * 1000:.0f} ms, its pairs "
        f"relaying {resumed * 1000:.0f} ms later (round trip {b_to_a * 1000:.1f} ms)"
    )


async def join_until_settled(url: str, deadline: float) -> tuple[str, Client | None]:
    """Join, retrying 1013 refusals: ``("joined", client)`` or ``("full", None)``."""
    while True:
        client = await Client.connect(url)
        first = await client.recv(timeout=10)
        if first["type"] == "joined":
            return "joined", client
        code = await client.closed()
        if first.get("code") == "room_full" or code == 4409:
            return "full", None
        assert first.get("code") == "router_unavailable" and code == 1013, first
        assert time.monotonic() < deadline, "the shard never came back"
        await asyncio.sleep(0.05)


async def test_three_joiners_per_room_around_a_shard_restart_never_make_three(
    cluster: ShardCluster,
) -> None:
    settled_before = rooms_of(0, 15)  # a pair each before the restart, a third comes after
    raced = rooms_of(0, 25)  # three joiners each, from both workers, during the restart
    history = History()
    for room in settled_before:
        await pair(cluster, room, 0, 1)
        history.joined(room, "before-a")
        history.joined(room, "before-b")

    cluster.kill_router(0)
    for port in cluster.ports:
        wait_until(lambda p=port: shard_health(p) == [False, True], 10, "shard 0 seen down")
    deadline = time.monotonic() + 30
    joiners = [
        (
            room,
            worker,
            asyncio.ensure_future(join_until_settled(cluster.url(room, worker), deadline)),
        )
        for room in raced
        for worker in (0, 1, 0)
    ] + [
        (room, 1, asyncio.ensure_future(join_until_settled(cluster.url(room, 1), deadline)))
        for room in settled_before
    ]
    await asyncio.sleep(0.2)  # some are refused while it is down, then retry into the rebuild
    cluster.start_router(0)
    for i, (room, worker, joiner) in enumerate(joiners):
        outcome, _ = await joiner
        who = f"joiner{i}@worker{worker}"
        if outcome == "joined":
            history.joined(room, who)
        else:
            history.refused(room, who, "room_full")

    # The invariants, on the history: never three in a room; exactly two admitted in each.
    assert history.violations() == []
    for room in settled_before + raced:
        assert history.count("joined", room) == 2, room
        assert history.count("refused:room_full", room) == 1, room


async def test_a_worker_with_another_map_of_shards_is_refused(cluster: ShardCluster) -> None:
    worker = cluster.start_worker([cluster.endpoints[0]])  # one router listed: a 1-shard map
    one = ShardMap(1).fingerprint
    wait_until(lambda: "refused this worker" in cluster.logs(), 15, "the worker's refusal")
    logs = cluster.logs()
    assert f"its map of router shards is {one}, ours is {SHARDS.fingerprint}" in logs
    assert f"it is shard 0 of map {SHARDS.fingerprint}, this worker's map is {one}" in logs
    # Never welcomed, it never listens: no load balancer sends it clients.
    assert worker.poll() is None and readyz(cluster.ports[-1])[0] == 0
