"""The client host of the emulated-host tests: WebSocket peers, run inside its namespace.

Usage (prints one JSON object on stdout)::

    python -m tests.hosts_client pairs URL_A URL_B --rooms 20 --messages 50
    python -m tests.hosts_client rtt URL_A URL_B --rounds 300
    python -m tests.hosts_client offer URL_A URL_B --sdp "v=0 ..."
    python -m tests.hosts_client watch URL_A URL_B --rooms 5 --seconds 12
    python -m tests.hosts_client pairs URL_A URL_B --shard 1 --shards 2   # shard 1's rooms only
    python -m tests.hosts_client refused URL_A URL_B --shard 0 --shards 2  # a join to a dead shard
    python -m tests.hosts_client race URL_A URL_B --rooms 200 --seconds 30   # 3 joiners a room

``URL_A``/``URL_B`` are ``ws://HOST:PORT/ws/signal/`` of the two worker
hosts: in every room the first peer connects to A, the second to B, so every
pair is split across the hosts and each message crosses the router.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

from tornado.websocket import WebSocketClientConnection, websocket_connect

from mcp_tornado.shards import ShardMap


async def _recv(conn: WebSocketClientConnection, timeout: float) -> dict[str, Any] | None:
    text = await asyncio.wait_for(conn.read_message(), timeout)
    if text is None:
        return None
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


async def _until(conn: WebSocketClientConnection, kind: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame = await _recv(conn, max(0.01, deadline - time.monotonic()))
        if frame is None:
            raise ConnectionError(f"closed ({conn.close_code}) while waiting for {kind}")
        if frame.get("type") == kind:
            return frame


async def _pair(url_a: str, url_b: str, room: str) -> tuple[Any, Any]:
    a = await websocket_connect(f"{url_a}?room={room}")
    await _until(a, "joined", 30)
    b = await websocket_connect(f"{url_b}?room={room}")
    await _until(b, "joined", 30)
    await _until(a, "peer-joined", 30)
    return a, b


def _candidate(room: str, sender: str, n: int) -> str:
    return json.dumps({"type": "candidate", "candidate": {"room": room, "from": sender, "n": n}})


def room_names(prefix: str, rooms: int, shard: int, shards: int) -> list[str]:
    """``rooms`` names ``PREFIX-I``; with ``shard`` >= 0, only those of that router shard."""
    if shard < 0:
        return [f"{prefix}-{i}" for i in range(rooms)]
    owner = ShardMap(shards)
    names: list[str] = []
    i = 0
    while len(names) < rooms:
        if owner.shard_of(f"{prefix}-{i}") == shard:
            names.append(f"{prefix}-{i}")
        i += 1
    return names


async def pairs(url_a: str, url_b: str, messages: int, names: list[str]) -> dict[str, Any]:
    """Numbered messages both ways in every room: what arrived, where, and in which order."""
    rooms = len(names)
    conns = await asyncio.gather(*(_pair(url_a, url_b, room) for room in names))
    report: dict[str, float] = {"rooms": rooms, "delivered": 0, "cross_room": 0, "duplicates": 0}
    report |= {"out_of_order": 0, "missing": 0, "from_self": 0}
    started = time.monotonic()

    async def side(conn: Any, room: str, me: str) -> None:
        for n in range(messages):
            conn.write_message(_candidate(room, me, n))
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while len(seen) < messages and time.monotonic() < deadline:
            frame = await _recv(conn, deadline - time.monotonic())
            if frame is None or frame.get("type") != "candidate":
                continue
            body = frame["candidate"]
            if body["room"] != room:
                report["cross_room"] += 1
            elif body["from"] == me:
                report["from_self"] += 1
            elif body["n"] in seen:
                report["duplicates"] += 1
            else:
                if seen and body["n"] < seen[-1]:
                    report["out_of_order"] += 1
                seen.append(body["n"])
                report["delivered"] += 1
        report["missing"] += messages - len(seen)

    tasks = []
    for room, (a, b) in zip(names, conns, strict=True):
        tasks += [side(a, room, "a"), side(b, room, "b")]
    await asyncio.gather(*tasks)
    report["seconds"] = round(time.monotonic() - started, 3)
    for a, b in conns:
        a.close()
        b.close()
    return report


async def rtt(url_a: str, url_b: str, rounds: int) -> dict[str, Any]:
    """Round trips A -> router -> B -> router -> A, one at a time: median and p99, in ms."""
    a, b = await _pair(url_a, url_b, "rtt")
    times: list[float] = []
    for n in range(rounds):
        started = time.perf_counter()
        a.write_message(_candidate("rtt", "a", n))
        await _until(b, "candidate", 30)
        b.write_message(_candidate("rtt", "b", n))
        await _until(a, "candidate", 30)
        times.append((time.perf_counter() - started) * 1000)
    a.close()
    b.close()
    times.sort()
    return {
        "rounds": rounds,
        "median_ms": round(statistics.median(times), 3),
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
    }


async def offer(url_a: str, url_b: str, sdp: str) -> dict[str, Any]:
    """One offer from A's peer to B's: whether it arrived intact."""
    a, b = await _pair(url_a, url_b, "capture")
    a.write_message(json.dumps({"type": "offer", "sdp": sdp}))
    frame = await _until(b, "offer", 30)
    a.close()
    b.close()
    return {"received": frame.get("sdp") == sdp}


async def watch(url_a: str, url_b: str, rooms: int, seconds: float) -> dict[str, Any]:
    """Pairs that stay open for ``seconds``, each side sending every 0.2 s: what each saw, when.

    Times are seconds since the pairs were all open (``t0``, wall clock, so
    the test can compare them with when it cut a cable); a first line
    ``{"open": t0}`` says when that was.
    """
    names = [f"watch-{i}" for i in range(rooms)]
    conns = await asyncio.gather(*(_pair(url_a, url_b, room) for room in names))
    t0 = time.time()
    print(json.dumps({"open": t0}), flush=True)  # the test starts its fault now
    events: list[tuple[float, str, str, str]] = []  # (t, room, side, what)

    async def side(conn: Any, room: str, me: str) -> None:
        n = 0
        end = time.monotonic() + seconds
        next_send = time.monotonic()
        while time.monotonic() < end:
            if time.monotonic() >= next_send:
                conn.write_message(_candidate(room, me, n))
                n += 1
                next_send += 0.2
            try:
                frame = await _recv(conn, 0.05)
            except TimeoutError:
                continue
            if frame is None:
                events.append((time.time() - t0, room, me, f"closed {conn.close_code}"))
                return
            kind = frame.get("type", "")
            if kind != "candidate":
                what = kind if kind != "error" else f"error {frame.get('code')}"
                what = what if kind != "info" else f"info {frame.get('code')}"
                events.append((time.time() - t0, room, me, what))
            else:
                events.append((time.time() - t0, room, me, "candidate"))

    tasks = []
    for room, (a, b) in zip(names, conns, strict=True):
        tasks += [side(a, room, "a"), side(b, room, "b")]
    await asyncio.gather(*tasks)
    for a, b in conns:
        a.close()
        b.close()
    return {"t0": t0, "events": events}


async def refused(url: str, room: str) -> dict[str, Any]:
    """A join that should be refused at once: its first frame's code, the close code, how fast."""
    started = time.monotonic()
    conn = await websocket_connect(f"{url}?room={room}")
    first = await _recv(conn, 10)
    while await _recv(conn, 10) is not None:
        pass
    took = (time.monotonic() - started) * 1000
    return {"code": (first or {}).get("code"), "close": conn.close_code, "ms": round(took, 1)}


async def race(url_a: str, url_b: str, names: list[str], seconds: float) -> dict[str, Any]:
    """Three joiners per room (A, B, A) at once, each retrying 1013 until admitted or refused.

    Answers how many rooms admitted two (``exact``), and the rooms that admitted
    more or fewer, with how many 1013 retries it took.
    """
    deadline = time.monotonic() + seconds
    retries = 0
    held: list[Any] = []

    async def join(url: str, room: str) -> str:
        nonlocal retries
        while True:
            try:
                conn = await websocket_connect(f"{url}?room={room}")
                first = await _recv(conn, 30)
            except (OSError, ConnectionError, TimeoutError):
                first = None
                conn = None
            if first is not None and first.get("type") == "joined":
                held.append(conn)  # keep the slot until every joiner is settled
                return "joined"
            if first is not None and first.get("code") == "room_full":
                return "full"
            if time.monotonic() > deadline:
                return "gave_up"
            retries += 1
            await asyncio.sleep(0.05)

    async def room(name: str) -> list[str]:
        return list(await asyncio.gather(*(join(u, name) for u in (url_a, url_b, url_a))))

    outcomes = await asyncio.gather(*(room(name) for name in names))
    wrong = {
        name: result
        for name, result in zip(names, outcomes, strict=True)
        if result.count("joined") != 2 or result.count("full") != 1
    }
    for conn in held:
        conn.close()
    return {
        "rooms": len(names),
        "exact": len(names) - len(wrong),
        "wrong": wrong,
        "retries": retries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["pairs", "rtt", "offer", "watch", "refused", "race"])
    parser.add_argument("url_a")
    parser.add_argument("url_b")
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--sdp", default="")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--prefix", default="split", help="pairs: rooms are PREFIX-0, ...")
    parser.add_argument("--shard", type=int, default=-1, help="only rooms of this router shard")
    parser.add_argument("--shards", type=int, default=1, help="of this many router shards")
    args = parser.parse_args()
    names = room_names(args.prefix, args.rooms, args.shard, args.shards)
    if args.mode == "pairs":
        result = pairs(args.url_a, args.url_b, args.messages, names)
    elif args.mode == "refused":
        result = refused(args.url_a, names[0])
    elif args.mode == "race":
        result = race(args.url_a, args.url_b, names, args.seconds)
    elif args.mode == "rtt":
        result = rtt(args.url_a, args.url_b, args.rounds)
    elif args.mode == "offer":
        result = offer(args.url_a, args.url_b, args.sdp)
    else:
        result = watch(args.url_a, args.url_b, args.rooms, args.seconds)
    print(json.dumps(asyncio.run(result)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
