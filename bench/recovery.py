"""Measure recovery times of a real ``mcp-tornado serve`` with its default settings.

Usage: ``.venv/bin/python bench/recovery.py [--workers 2] [--rounds 5]``

* worker death: kill -9 the worker holding one peer of a pair; time until the
  other peer receives ``leave``.
* router death: kill -9 the router; time until a pair split across workers
  relays again (``serve`` restarts the router; workers re-register their peers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid

import psutil
from tornado.websocket import WebSocketClientConnection, websocket_connect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


async def _recv_type(conn: WebSocketClientConnection, kind: str) -> dict[str, object]:
    while True:
        text = await conn.read_message()
        assert isinstance(text, str), "connection closed"
        data = json.loads(text)
        if data.get("type") == kind:
            return dict(data)


async def _pair(url: str) -> tuple[WebSocketClientConnection, WebSocketClientConnection]:
    a = await websocket_connect(url)
    await _recv_type(a, "joined")
    b = await websocket_connect(url)
    await _recv_type(a, "peer-joined")
    return a, b


def _worker_of(conn: WebSocketClientConnection, workers: list[psutil.Process]) -> psutil.Process:
    stream = conn.protocol.stream if conn.protocol else None
    assert stream is not None and stream.socket is not None
    local_port = stream.socket.getsockname()[1]
    for worker in workers:
        for c in worker.net_connections("tcp"):
            if c.raddr and c.raddr.port == local_port:
                return worker
    raise LookupError("no worker holds this connection")


def _children(serve: subprocess.Popen[bytes], role: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(serve.pid).children():
        try:
            if role in child.cmdline():  # the command word: "worker" or "router"
                found.append(child)
        except psutil.Error:  # exited, not yet reaped
            pass
    return found


def _workers(serve: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return _children(serve, "worker")


def _router(serve: subprocess.Popen[bytes]) -> psutil.Process:
    return _children(serve, "router")[0]


async def _wait_ready(port: int, workers: int, serve: subprocess.Popen[bytes]) -> None:
    while not (_ready(port) and len(_workers(serve)) == workers):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # let every worker register, not just the one that answered


async def measure(workers: int, rounds: int) -> dict[str, list[float]]:
    port = _free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "mcp_tornado", "serve", "--log-level", "WARNING",
         "--workers", str(workers), "--port", str(port)],
        start_new_session=True,
    )  # fmt: skip
    results: dict[str, list[float]] = {"worker_death_to_leave_s": [], "router_death_to_relay_s": []}
    try:
        url = f"ws://127.0.0.1:{port}/ws/signal/?room="
        await _wait_ready(port, workers, serve)
        for _ in range(rounds):
            # Worker death: find a pair split across two workers, kill one side's worker.
            while True:
                a, b = await _pair(url + uuid.uuid4().hex)
                wa, wb = _worker_of(a, _workers(serve)), _worker_of(b, _workers(serve))
                if wa.pid != wb.pid:
                    break
                a.close()
                b.close()
            started = time.monotonic()
            wb.send_signal(signal.SIGKILL)
            await _recv_type(a, "leave")
            results["worker_death_to_leave_s"].append(time.monotonic() - started)
            a.close()
            await _wait_ready(port, workers, serve)

            # Router death: a split pair keeps its sockets; time until relaying resumes.
            while True:
                a, b = await _pair(url + uuid.uuid4().hex)
                if _worker_of(a, _workers(serve)).pid != _worker_of(b, _workers(serve)).pid:
                    break
                a.close()
                b.close()
            started = time.monotonic()
            _router(serve).send_signal(signal.SIGKILL)
            while True:
                await a.write_message(json.dumps({"type": "candidate", "t": time.monotonic()}))
                try:
                    await asyncio.wait_for(_recv_type(b, "candidate"), 0.05)
                    break
                except TimeoutError:
                    continue
            results["router_death_to_relay_s"].append(time.monotonic() - started)
            a.close()
            b.close()
            # Let the router count as stable again, or serve's crash-loop backoff
            # (doubling while a child dies within 10 s of starting) is what we'd measure.
            while time.time() - _router(serve).create_time() < 10.5:
                await asyncio.sleep(0.2)
            await _wait_ready(port, workers, serve)
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(20)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(measure(args.workers, args.rounds))
    for name, values in results.items():
        print(
            f"{name}: median {statistics.median(values):.3f}  max {max(values):.3f}  "
            f"(n={len(values)}: {', '.join(f'{v:.3f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
