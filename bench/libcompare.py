"""Micro-measurement of WebSocket client libraries for the load client (``python -m bench libs``).

Same job for each library, in this one process on the same (uv)loop: ``pairs``
pairs, peer B echoes, peer A runs a closed loop of one message in flight, for
``messages`` round trips in all, against a relay (the picows reference relay unless
``--url`` is given). Reported: round trips/s and the client's CPU time per round
trip (two sends and two receives), which is what decides how many peers one client
core can drive while the server takes the other one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import report
from bench.procmon import SpawnedServer, free_port
from bench.wsclient import Peer, connect_peer, new_event_loop, room_url

SETTLE_S = 0.3


_CAND = "candidate:1 1 udp 1 192.0.2.1 9 typ host"


def _msg(seq: int) -> str:
    t = time.monotonic_ns()
    return f'{{"type":"candidate","seq":{seq},"t":{t},"candidate":"{_CAND}"}}'


async def _picows(url: str, pairs: int, per_pair: int) -> None:
    class Owner:
        def __init__(self) -> None:
            self.a: Peer | None = None
            self.left = per_pair
            self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_message(self, peer: Peer, data: bytes) -> None:
            if b'"seq"' not in data:
                return
            if peer.role == 1:
                peer.send(data)
                return
            self.left -= 1
            if self.left > 0:
                peer.send(_msg(self.left).encode())
            elif not self.done.done():
                self.done.set_result(None)

        def on_closed(self, peer: Peer) -> None:
            pass

    owners = []
    for i in range(pairs):
        owner = Owner()
        u = room_url(url, f"libs-picows-{i}-{time.time_ns()}")
        owner.a = await connect_peer(u, owner, 0)
        await connect_peer(u, owner, 1)
        owners.append(owner)
    await asyncio.sleep(SETTLE_S)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for owner in owners:
        assert owner.a is not None
        owner.a.send(_msg(per_pair).encode())
    await asyncio.wait_for(asyncio.gather(*(o.done for o in owners)), 120)
    _record(t0, c0)


_LAST: dict[str, float] = {}


def _record(t0: float, c0: float) -> None:
    _LAST["wall"] = time.perf_counter() - t0
    _LAST["cpu"] = time.process_time() - c0


async def _websockets(url: str, pairs: int, per_pair: int) -> None:
    from websockets.asyncio.client import connect  # type: ignore[import-not-found,unused-ignore]

    conns = []
    for i in range(pairs):
        u = room_url(url, f"libs-ws-{i}-{time.time_ns()}")
        a = await connect(u, compression=None)
        b = await connect(u, compression=None)
        conns.append((a, b))
    await asyncio.sleep(SETTLE_S)

    async def echo(b: Any) -> None:
        with contextlib.suppress(Exception):
            async for m in b:
                if '"seq"' in m:
                    await b.send(m)

    async def drive(a: Any) -> None:
        for k in range(per_pair):
            await a.send(_msg(k))
            while '"seq"' not in await a.recv():
                pass

    echoes = [asyncio.ensure_future(echo(b)) for _, b in conns]
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.wait_for(asyncio.gather(*(drive(a) for a, _ in conns)), 120)
    _record(t0, c0)
    for a, b in conns:
        await a.close()
        await b.close()
    for task in echoes:
        task.cancel()


async def _aiohttp(url: str, pairs: int, per_pair: int) -> None:
    import aiohttp  # type: ignore[import-not-found,unused-ignore]

    async with aiohttp.ClientSession() as session:
        conns = []
        for i in range(pairs):
            u = room_url(url, f"libs-aio-{i}-{time.time_ns()}")
            a = await session.ws_connect(u, autoping=True)
            b = await session.ws_connect(u, autoping=True)
            conns.append((a, b))
        await asyncio.sleep(SETTLE_S)

        async def echo(b: Any) -> None:
            async for m in b:
                if m.type == aiohttp.WSMsgType.TEXT and '"seq"' in m.data:
                    await b.send_str(m.data)

        async def drive(a: Any) -> None:
            for k in range(per_pair):
                await a.send_str(_msg(k))
                while True:
                    m = await a.receive()
                    if m.type == aiohttp.WSMsgType.TEXT and '"seq"' in m.data:
                        break

        echoes = [asyncio.ensure_future(echo(b)) for _, b in conns]
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.wait_for(asyncio.gather(*(drive(a) for a, _ in conns)), 120)
        _record(t0, c0)
        for a, b in conns:
            await a.close()
            await b.close()
        for task in echoes:
            task.cancel()


async def _tornado(url: str, pairs: int, per_pair: int) -> None:
    from tornado.websocket import websocket_connect

    conns = []
    for i in range(pairs):
        u = room_url(url, f"libs-tornado-{i}-{time.time_ns()}")
        a = await websocket_connect(u)
        b = await websocket_connect(u)
        conns.append((a, b))
    await asyncio.sleep(SETTLE_S)

    async def echo(b: Any) -> None:
        while True:
            m = await b.read_message()
            if m is None:
                return
            if isinstance(m, str) and '"seq"' in m:
                await b.write_message(m)

    async def drive(a: Any) -> None:
        for k in range(per_pair):
            await a.write_message(_msg(k))
            while True:
                m = await a.read_message()
                if m is None or '"seq"' in m:
                    break

    echoes = [asyncio.ensure_future(echo(b)) for _, b in conns]
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.wait_for(asyncio.gather(*(drive(a) for a, _ in conns)), 120)
    _record(t0, c0)
    for a, b in conns:
        a.close()
        b.close()
    await asyncio.sleep(0.1)
    for task in echoes:
        task.cancel()


LIBS: dict[str, Callable[[str, int, int], Awaitable[None]]] = {
    "picows": _picows,
    "websockets": _websockets,
    "aiohttp": _aiohttp,
    "tornado": _tornado,
}


def measure(url: str, pairs: int, messages: int) -> list[dict[str, Any]]:
    per_pair = max(1, messages // pairs)
    rows = []
    for name, fn in LIBS.items():
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        row: dict[str, Any] = {"library": name}
        try:
            loop.run_until_complete(fn(url, pairs, per_pair))
            n = per_pair * pairs
            row.update(
                round_trips=n,
                round_trips_per_s=n / _LAST["wall"],
                client_cpu_us_per_round_trip=1e6 * _LAST["cpu"] / n,
            )
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0.1))
            loop.close()
            asyncio.set_event_loop(None)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    return report.markdown_table(
        ["client library", "round trips/s", "client CPU µs per round trip"],
        [
            [
                r["library"],
                report.fmt(r.get("round_trips_per_s")),
                report.fmt(r.get("client_cpu_us_per_round_trip")),
            ]
            if "error" not in r
            else [r["library"], "error", r["error"]]
            for r in rows
        ],
    )


def main(args: argparse.Namespace) -> int:
    server: SpawnedServer | None = None
    url = args.url
    if url is None:
        import sys

        port = free_port()
        url = f"ws://127.0.0.1:{port}/ws/signal/"
        server = SpawnedServer(f"{sys.executable} -m bench.reference_relay --port {port}", url)
        server.start()
    try:
        rows = measure(url, args.pairs, args.messages)
    finally:
        if server is not None:
            server.stop()
    print(markdown(rows))
    if args.out:
        report.write_json(args.out, [{"scenario": "libs", "label": "libs", "rows": rows}])
    return 0
