"""Resume storm: kill -9 a worker holding N resumable peers; time until all have resumed.

Usage: ``.venv/bin/python bench/resume_storm.py [--peers 5000] [--jitter 1.0]``

Starts a router and two workers (separate processes, free ports), opens N pairs
(``?resumable=1``): one peer on the doomed worker, its partner on the other.
Then kill -9 of the doomed worker.  Each of its peers notices its socket end and
resumes on the surviving worker (``?resume=TOKEN``) after a random delay in
``[0, jitter]`` s (a client's reconnect jitter); each partner, told
``peer-reconnecting``, sends one message, which must reach the resumed peer
after its ``resumed``.  Prints the times from the kill until every partner was
told, and until every peer had resumed, the failures (a ``leave``, a refused
resume, a lost or doubled held message), and the router's and the surviving
worker's CPU seconds over the storm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from bench.wsclient import raise_nofile_limit, run_async

_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (mask of zeros: the payload goes as it is)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + b"\0\0\0\0" + payload


class Client:
    """One raw WebSocket client connection (just enough protocol for this storm)."""

    def __init__(self, port: int, query: str) -> None:
        self.port = port
        self.query = query
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> dict[str, Any]:
        """Connect, upgrade; return the first event (``joined``, ``resumed`` or an error)."""
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = (
            f"GET /ws/signal/?{self.query} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return await self.next()

    async def next(self) -> dict[str, Any]:
        """The next text frame as JSON; ``ConnectionError`` at the end (close frame or EOF)."""
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        try:
            while True:
                b0, b1 = await reader.readexactly(2)
                size = b1 & 0x7F
                if size == 126:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", await reader.readexactly(8))[0]
                payload = await reader.readexactly(size)
                opcode = b0 & 0x0F
                if opcode == _TEXT:
                    data: dict[str, Any] = json.loads(payload)
                    return data
                if opcode == _PING:
                    writer.write(_frame(_PONG, payload))
                elif opcode == _CLOSE:
                    raise ConnectionError("closed")
        except asyncio.IncompleteReadError:
            raise ConnectionError("eof") from None

    def send(self, message: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.write(_frame(_TEXT, json.dumps(message).encode()))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Storm:
    """N pairs across two workers, and what happened to each when one worker died."""

    def __init__(self, doomed: int, survivor: int, peers: int, jitter: float) -> None:
        self.doomed = doomed
        self.survivor = survivor
        self.peers = peers
        self.jitter = jitter
        self.killed = 0.0
        self.told: list[float] = []  # partner got peer-reconnecting, seconds after the kill
        self.resumed: list[float] = []  # peer got resumed, seconds after the kill
        self.problems: Counter[str] = Counter()

    async def pair(self, index: int) -> tuple[Client, str, Client]:
        room = f"storm-{index}-{uuid.uuid4().hex[:8]}"
        doomed = Client(self.doomed, f"room={room}&resumable=1")
        token = (await doomed.open())["resume"]
        partner = Client(self.survivor, f"room={room}&resumable=1")
        await partner.open()
        await doomed.next()  # peer-joined
        return doomed, token, partner

    async def doomed_peer(self, client: Client, token: str, room: str) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await client.next()
        client.close()
        await asyncio.sleep(random.uniform(0, self.jitter))
        again = Client(self.survivor, f"room={room}&resume={token}")
        try:
            first = await again.open()
            if first.get("type") != "resumed":
                self.problems[f"resume refused: {first.get('code')}"] += 1
                return
            self.resumed.append(time.monotonic() - self.killed)
            held = await asyncio.wait_for(again.next(), 30)
            if held.get("type") != "candidate" or held.get("n") != 1:
                self.problems[f"held message: got {held.get('type')}"] += 1
            else:
                with contextlib.suppress(TimeoutError):
                    extra = await asyncio.wait_for(again.next(), 2)
                    if extra.get("type") == "candidate":
                        self.problems["held message twice"] += 1
        except (ConnectionError, OSError, TimeoutError) as exc:
            self.problems[f"resume failed: {exc!r}"[:60]] += 1
        finally:
            again.close()

    async def partner_peer(self, client: Client) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            while True:
                event = await asyncio.wait_for(client.next(), 60)
                kind = event.get("type")
                if kind == "peer-reconnecting":
                    self.told.append(time.monotonic() - self.killed)
                    client.send({"type": "candidate", "n": 1})  # held for its resume
                elif kind == "peer-resumed":
                    return
                elif kind in ("leave", "peer-left"):
                    self.problems[f"partner got {kind}"] += 1
                    return


async def storm(args: argparse.Namespace, ports: tuple[int, int], kill: Any) -> Storm:
    run = Storm(ports[0], ports[1], args.peers, args.jitter)
    pairs: list[tuple[Client, str, Client]] = []
    limit = asyncio.Semaphore(100)

    async def one(index: int) -> None:
        async with limit:
            pairs.append(await run.pair(index))

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.peers)))
    print(f"{len(pairs)} pairs open in {time.monotonic() - started:.1f}s", file=sys.stderr)
    tasks = [
        asyncio.ensure_future(run.doomed_peer(d, token, d.query.split("&", 1)[0][5:]))
        for d, token, _ in pairs
    ] + [asyncio.ensure_future(run.partner_peer(p)) for _, _, p in pairs]
    await asyncio.sleep(0.5)
    run.killed = time.monotonic()
    kill()
    await asyncio.gather(*tasks)
    for _, _, partner in pairs:
        partner.close()
    return run


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mcp_tornado", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=5000, help="peers on the killed worker")
    parser.add_argument("--jitter", type=float, default=1.0, help="reconnect delay, 0..J s")
    parser.add_argument("--grace", type=float, default=30.0, help="--resume-grace")
    args = parser.parse_args()
    raise_nofile_limit()
    tmp = Path(tempfile.mkdtemp(prefix="resume-storm-"))
    endpoint = f"ipc://{tmp}/router.ipc"
    log = tmp / "servers.log"
    ports = (_free_port(), _free_port())
    fast = ["--heartbeat-interval", "0.5"]
    router = _spawn(
        ["router", "--bind", endpoint, "--expected-workers", "2", "--resume-grace",
         str(args.grace), *fast],
        log,
    )  # fmt: skip
    limits = ["--rate-limit", "0", "--max-connections-per-ip", "0", "--max-connections", "0"]
    workers = [
        _spawn(["worker", "--router", endpoint, "--port", str(p), *fast, *limits], log)
        for p in ports
    ]
    try:
        deadline = time.monotonic() + 30
        while not all(_healthy(p) for p in ports):
            if time.monotonic() > deadline:
                sys.exit(f"servers did not start; see {log}")
            time.sleep(0.1)
        watched = {"router": psutil.Process(router.pid), "worker": psutil.Process(workers[1].pid)}
        before: dict[str, float] = {}

        def kill() -> None:
            for name, proc in watched.items():
                times = proc.cpu_times()
                before[name] = times.user + times.system
            workers[0].send_signal(signal.SIGKILL)

        result = run_async(lambda: storm(args, ports, kill))
        elapsed = max(result.resumed, default=0.0)
        cpu = {}
        for name, proc in watched.items():
            times = proc.cpu_times()
            cpu[name] = times.user + times.system - before[name]
        print(f"peers on the killed worker: {args.peers}, reconnect jitter 0..{args.jitter}s")
        if result.told:
            print(
                f"partners told peer-reconnecting: {len(result.told)}, all within "
                f"{max(result.told):.2f}s (median {statistics.median(result.told):.2f}s)"
            )
        if result.resumed:
            ordered = sorted(result.resumed)
            print(
                f"resumed: {len(ordered)}, all within {elapsed:.2f}s of the kill "
                f"(median {statistics.median(ordered):.2f}s, "
                f"p99 {ordered[int(len(ordered) * 0.99) - 1]:.2f}s)"
            )
        print(
            f"CPU over that time: router {cpu['router']:.2f}s, surviving worker "
            f"{cpu['worker']:.2f}s"
        )
        print(f"problems: {dict(result.problems) or 'none'}")
    finally:
        for child in [*workers, router]:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        for child in [*workers, router]:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
