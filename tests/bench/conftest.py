"""Fixtures for the bench's own tests: servers on free loopback ports, always stopped."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bench.compare import resolve_command
from bench.procmon import SpawnedServer, free_port


def _alive_children(me: psutil.Process, before: set[int]) -> list[psutil.Process]:
    out = []
    for proc in me.children(recursive=True):
        if proc.pid in before:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            # multiprocessing's resource tracker lives as long as the test process
            if any("resource_tracker" in part for part in proc.cmdline()):
                continue
        except psutil.Error:
            continue
        out.append(proc)
    return out


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test must leave no child process behind (killed and reported if it does)."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 10
    left = _alive_children(me, before)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _alive_children(me, before)
    described = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            described.append(" ".join(proc.cmdline()))
            proc.kill()
    assert not left, f"processes left running: {described}"


def _serve(command: str, tmp: Path, name: str) -> Iterator[SpawnedServer]:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws/signal/"
    server = SpawnedServer(command.format(port=port), url, log_path=tmp / f"{name}.log")
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def reference_relay(tmp_path: Path) -> Iterator[SpawnedServer]:
    """The picows reference relay on a free port."""
    yield from _serve(
        f"{sys.executable} -m bench.reference_relay --host 127.0.0.1 --port {{port}}",
        tmp_path,
        "reference",
    )


def _mcp(tmp_path: Path, name: str, options: str) -> Iterator[SpawnedServer]:
    """A real ``mcp-tornado serve OPTIONS`` on a free port (skipped if not installed)."""
    command = resolve_command(f"mcp-tornado serve --host 127.0.0.1 --port {{port}} {options}")
    if command is None:
        pytest.skip("mcp-tornado is not installed")
    yield from _serve(command, tmp_path, name)


@pytest.fixture
def mcp_server(tmp_path: Path) -> Iterator[SpawnedServer]:
    """A real ``mcp-tornado serve --workers 2`` on a free port, without the rate limit.

    Like ``compare``: at 50 msg/s per connection (the default) the relay tests
    would measure the limiter, which drops what the bench sends over it.
    """
    yield from _mcp(tmp_path, "mcp", "--workers 2 --rate-limit 0")


@pytest.fixture
def mcp_server_1w(tmp_path: Path) -> Iterator[SpawnedServer]:
    """``mcp-tornado serve --workers 1`` (every call on one worker), no rate limit."""
    yield from _mcp(tmp_path, "mcp1", "--workers 1 --rate-limit 0")


@pytest.fixture
def mcp_rate_limited(tmp_path: Path) -> Iterator[SpawnedServer]:
    """``mcp-tornado serve --workers 1`` with its per-connection rate limit on (low)."""
    yield from _mcp(tmp_path, "mcp-limited", "--workers 1 --rate-limit 20 --rate-burst 20")


@pytest.fixture
def mcp_two_ports(tmp_path: Path) -> Iterator[tuple[SpawnedServer, SpawnedServer]]:
    """One router and two workers on two ports: a call's A and B on different workers."""
    router_cmd = resolve_command("mcp-tornado router --bind {endpoint}")
    if router_cmd is None:
        pytest.skip("mcp-tornado is not installed")
    endpoint = f"ipc://{tmp_path}/router.ipc"
    log = open(tmp_path / "router.log", "wb")  # noqa: SIM115 - closed below
    router = subprocess.Popen(
        shlex.split(router_cmd.format(endpoint=endpoint)),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        process_group=0,
    )
    workers: list[SpawnedServer] = []
    try:
        for name in ("wa", "wb"):
            command = resolve_command(
                f"mcp-tornado worker --router {endpoint} --host 127.0.0.1 --port {{port}} "
                "--rate-limit 0"
            )
            assert command is not None
            port = free_port()
            server = SpawnedServer(
                command.format(port=port),
                f"ws://127.0.0.1:{port}/ws/signal/",
                log_path=tmp_path / f"{name}.log",
            )
            workers.append(server)
            server.start(timeout=60)
        yield workers[0], workers[1]
    finally:
        for server in workers:
            server.stop()
        router.terminate()
        try:
            router.wait(timeout=10)
        except subprocess.TimeoutExpired:
            router.kill()
            router.wait(timeout=5)
        log.close()
