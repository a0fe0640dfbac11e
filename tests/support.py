"""Test helpers: real router/worker processes on 127.0.0.1, and a small WebSocket client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from tornado import gen
from tornado.websocket import WebSocketClientConnection, websocket_connect

# Fast heartbeats, with room for a loaded 2-core machine to stall a process for a while.
FAST = ["--heartbeat-interval", "0.1", "--heartbeat-liveness", "10"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def spawn(
    *args: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``mcp-tornado ARGS`` in its own process group (so cleanup reaches its children)."""
    with open(log if log is not None else os.devnull, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mcp_tornado", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stop a process started by :func:`spawn` and everything in its group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(5)


def ready(port: int) -> bool:
    """Whether the worker on ``port`` is registered with a live router (``/readyz`` says 200)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until(predicate: Any, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Cluster:
    """A router and workers as separate processes, each worker on its own port."""

    def __init__(
        self,
        tmp: Path,
        workers: int = 2,
        router_args: tuple[str, ...] = (),
        worker_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.endpoint = f"ipc://{tmp}/router.ipc"
        self.log = tmp / "cluster.log"
        self.ports = [free_port() for _ in range(workers)]
        self.router_args = router_args
        self.worker_args = worker_args
        self.env = env  # added to the workers' environment (e.g. a token secret)
        self.router: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_router(self) -> None:
        self.router = spawn(
            "router", "--bind", self.endpoint, "--resync-grace", "0.3",
            "--expected-workers", str(len(self.ports)), *FAST, *self.router_args, log=self.log,
        )  # fmt: skip

    def start_worker(self, index: int) -> subprocess.Popen[bytes]:
        process = spawn(
            "worker", "--router", self.endpoint, "--port", str(self.ports[index]), *FAST,
            "--shutdown-timeout", "3", *self.worker_args, log=self.log, env=self.env,
        )  # fmt: skip
        if index < len(self.workers):
            self.workers[index] = process
        else:
            self.workers.append(process)
        return process

    def start(self) -> Cluster:
        self.start_router()
        for i in range(len(self.ports)):
            self.start_worker(i)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15) -> None:
        for port in self.ports:
            wait_until(lambda p=port: ready(p), timeout, f"worker on port {port}")

    def url(self, room: str | None, worker: int = 0, query: str | None = None) -> str:
        base = f"ws://127.0.0.1:{self.ports[worker]}/ws/signal/"
        if query is not None:
            return base + query
        return base if room is None else f"{base}?room={room}"

    def alive(self) -> bool:
        processes = [self.router, *self.workers]
        return all(p is not None and p.poll() is None for p in processes)

    def stop(self) -> None:
        for process in self.workers:  # all at once: each may take a moment to drain
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers:
            stop(process)
        if self.router is not None:
            stop(self.router)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def running_cluster(
    tmp: Path, workers: int = 1, *worker_args: str, env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """A started :class:`Cluster` whose workers take ``worker_args``; stopped on exit."""
    cluster = Cluster(tmp, workers, worker_args=worker_args, env=env)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class Client:
    """A WebSocket client that reads JSON frames with a timeout."""

    opened: ClassVar[list[Client]] = []  # closed by the ``close_clients`` fixture after each test

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self._reading: Awaitable[str | bytes | None] | None = None
        Client.opened.append(self)

    @classmethod
    def close_all(cls) -> None:
        for client in cls.opened:
            client.close()
        cls.opened.clear()

    @classmethod
    async def connect(cls, url: str) -> Client:
        return cls(await websocket_connect(url))

    def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        self.conn.write_message(text)

    async def recv_raw(self, timeout: float = 10) -> str | None:
        # A read that timed out is still pending and will take the next frame: reuse it.
        if self._reading is None:
            self._reading = self.conn.read_message()
        message = await gen.with_timeout(timedelta(seconds=timeout), self._reading)
        self._reading = None
        assert message is None or isinstance(message, str)
        return message

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        text = await self.recv_raw(timeout)
        assert text is not None, f"connection closed ({self.conn.close_code})"
        data = json.loads(text)
        assert isinstance(data, dict)
        return data

    async def recv_type(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        """Read frames until one of ``type`` ``kind`` arrives (skipping others)."""
        while True:
            data = await self.recv(timeout)
            if data.get("type") == kind:
                return data

    async def nothing_within(self, seconds: float) -> bool:
        """True if no frame arrives within ``seconds``."""
        try:
            await self.recv_raw(seconds)
        except TimeoutError:
            return True
        return False

    async def closed(self, timeout: float = 10) -> int | None:
        """Wait for the server to close us; return the close code."""
        while await self.recv_raw(timeout) is not None:
            pass
        return self.conn.close_code

    def close(self) -> None:
        self.conn.close()

    def cut(self) -> None:
        """Drop the TCP connection without a close frame."""
        stream = self.conn.protocol.stream if self.conn.protocol else None
        if stream is not None:
            stream.close()
