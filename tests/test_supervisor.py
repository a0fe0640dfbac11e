"""``mcp-tornado serve``: the whole service as one command, as an operator runs it."""

from __future__ import annotations

import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mcp_tornado.supervisor import Supervisor
from tests.support import FAST, Client, free_port, ready, spawn, stop, wait_until

pytestmark = [pytest.mark.gen_test(timeout=30), pytest.mark.usefixtures("close_clients")]


class Service:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "serve.log"
        self.process = spawn(
            "serve", "--workers", "2", "--port", str(self.port), "--shutdown-timeout", "3", *FAST,
            log=self.log,
        )  # fmt: skip
        try:
            wait_until(lambda: ready(self.port), 15, "serve to answer")
        except BaseException:
            stop(self.process)
            raise

    def url(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/signal/?room={room}"

    def children(self) -> list[psutil.Process]:
        children: list[psutil.Process] = psutil.Process(self.process.pid).children()
        return children

    def workers(self) -> list[psutil.Process]:
        return [p for p in self.children() if "worker" in p.cmdline()]


@pytest.fixture
def service(tmp_path: Path, io_loop: object) -> Iterator[Service]:
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        Client.close_all()
        stop(svc.process)


async def test_serve_runs_a_router_and_two_workers_on_one_port(service: Service) -> None:
    assert len(service.workers()) == 2
    assert len(service.children()) == 3
    # Enough pairs that both workers (SO_REUSEPORT) take connections.
    for _ in range(8):
        room = uuid.uuid4().hex
        a = await Client.connect(service.url(room))
        b = await Client.connect(service.url(room))
        await a.recv_type("peer-joined")
        b.send({"type": "offer", "sdp": room})
        assert (await a.recv_type("offer"))["sdp"] == room
    serving = {
        conn.pid
        for conn in psutil.net_connections("tcp")
        if conn.laddr and conn.laddr.port == service.port and conn.status == "ESTABLISHED"
    }
    assert {w.pid for w in service.workers()} <= serving


async def test_serve_restarts_a_dead_worker(service: Service) -> None:
    victim = service.workers()[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)
    wait_until(lambda: len(service.workers()) == 2, 10, "the worker to be restarted")
    assert victim.pid not in {w.pid for w in service.workers()}
    wait_until(lambda: ready(service.port), 10, "health")
    room = uuid.uuid4().hex
    a = await Client.connect(service.url(room))
    b = await Client.connect(service.url(room))
    await a.recv_type("peer-joined")
    a.send({"type": "answer", "sdp": "x"})
    assert (await b.recv_type("answer"))["sdp"] == "x"


async def test_sigterm_closes_clients_with_going_away_and_exits(service: Service) -> None:
    room = uuid.uuid4().hex
    a = await Client.connect(service.url(room))
    b = await Client.connect(service.url(room))
    await a.recv_type("peer-joined")
    children = service.children()
    for n in range(100):  # in flight when the signal lands: all must arrive
        a.send({"type": "candidate", "n": n})
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    assert [(await b.recv_type("candidate"))["n"] for _ in range(100)] == list(range(100))
    assert await a.closed(10) == 1001
    assert await b.closed(10) == 1001
    assert service.process.wait(10) == 0
    assert time.monotonic() - started < 5
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


def test_a_child_that_keeps_dying_is_restarted_with_backoff() -> None:
    crashing = [sys.executable, "-c", "raise SystemExit(3)"]
    sleeping = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor(router=sleeping, workers=[crashing], shutdown_timeout=2)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        time.sleep(2.5)
    finally:
        supervisor.stop()
        thread.join(10)
    # Backoff doubles from 0.2 s: about 3-4 restarts in 2.5 s, where a tight loop would do ~50.
    assert 2 <= supervisor.workers[0].restarts <= 5
    assert supervisor.router.restarts == 0
    router = supervisor.router.process
    assert router is not None and router.poll() is not None, "stop() ends every child"


def test_each_child_learns_its_slot_and_generation(tmp_path: Path) -> None:
    # Each run of a worker appends "SLOT GENERATION" to its file, then exits (and is restarted).
    script = (
        "import os, sys; env = os.environ; open(sys.argv[1], 'a').write("
        "env.get('MCP_TORNADO_SLOT', '-') + ' ' + env['MCP_TORNADO_GENERATION'] + '\\n')"
    )
    workers = [[sys.executable, "-c", script, str(tmp_path / f"w{i}")] for i in range(2)]
    router = [sys.executable, "-c", script + "; import time; time.sleep(60)", str(tmp_path / "r")]
    supervisor = Supervisor(router=router, workers=workers, shutdown_timeout=2)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:

        def ran(name: str, times: int) -> bool:
            path = tmp_path / name
            return path.exists() and len(path.read_text().splitlines()) >= times

        wait_until(lambda: ran("r", 1) and ran("w0", 2) and ran("w1", 2), 60, "restarts")
    finally:
        supervisor.stop()
        thread.join(10)
    assert (tmp_path / "w0").read_text().splitlines()[:2] == ["0 0", "0 1"]
    assert (tmp_path / "w1").read_text().splitlines()[:2] == ["1 0", "1 1"]
    assert (tmp_path / "r").read_text() == "- 0\n"


def test_one_router_per_shard_each_with_its_settings_or_none_on_a_worker_host(
    tmp_path: Path,
) -> None:
    # Each child appends "NAME SHARD" (its shard env, "-" for a worker) to its file.
    script = (
        "import os, sys; env = os.environ; open(sys.argv[1], 'a').write("
        "env['MCP_TORNADO_CHILD'] + ' ' + env.get('SHARD', '-') + '\\n'); "
        "import time; time.sleep(60)"
    )
    routers = Supervisor(
        [sys.executable, "-c", script, str(tmp_path / "routers")],
        [[sys.executable, "-c", script, str(tmp_path / "workers")]],
        shutdown_timeout=2,
        router_env={"SHARD": "?"},
        shard_envs=[{"SHARD": "0"}, {"SHARD": "1"}],
    )
    host = Supervisor(None, [[sys.executable, "-c", script, str(tmp_path / "host")]], 2)
    threads = [threading.Thread(target=s.run) for s in (routers, host)]
    for thread in threads:
        thread.start()
    try:

        def lines(name: str, count: int) -> bool:
            path = tmp_path / name
            return path.exists() and len(path.read_text().splitlines()) >= count

        wait_until(lambda: lines("routers", 2) and lines("workers", 1), 30, "the routers")
        wait_until(lambda: lines("host", 1), 30, "the worker host's worker")
    finally:
        routers.stop()
        host.stop()
        for thread in threads:
            thread.join(10)
    assert sorted((tmp_path / "routers").read_text().splitlines()) == ["router-0 0", "router-1 1"]
    assert (tmp_path / "workers").read_text() == "worker-0 -\n"
    assert host.routers == [] and (tmp_path / "host").read_text() == "worker-0 -\n"
