"""One port, one deployment: a taken port stops ``serve``/``worker`` at once, with one line.

Real processes on 127.0.0.1: ``serve`` twice on one port, a port held by a
plain socket (with and without ``SO_REUSEPORT``), workers of two routers on
one port, a router that cannot bind; and the one line ``serve`` prints once
every worker listens.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mcp_tornado import ports
from mcp_tornado.supervisor import CANNOT_START, Supervisor
from tests.support import FAST, Client, free_port, ready, spawn, stop, wait_until

pytestmark = [pytest.mark.gen_test(timeout=60), pytest.mark.usefixtures("close_clients")]

READY = re.compile(r"^open http://127\.0\.0\.1:(\d+)/ \((\d+) workers?, router (\S+)\)$", re.M)


class Finished:
    def __init__(self, code: int, out: str, err: str, took: float) -> None:
        self.code, self.out, self.err, self.took = code, out, err, took

    @property
    def lines(self) -> list[str]:
        return [line for line in (self.out + self.err).splitlines() if line.strip()]


def run(*args: str, timeout: float = 20) -> Finished:
    """Run ``mcp-tornado ARGS`` to its end; whatever it started is gone afterwards."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "mcp_tornado", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    return Finished(process.returncode, out, err, time.monotonic() - started)


class Serve:
    """``mcp-tornado serve`` on ``port``, its output in a log file."""

    def __init__(self, tmp: Path, port: int, *args: str, name: str = "serve") -> None:
        self.port = port
        self.log = tmp / f"{name}.log"
        self.process = spawn(
            "serve", "--workers", "2", "--port", str(port), "--shutdown-timeout", "3", *FAST,
            *args, log=self.log,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self) -> re.Match[str]:
        wait_until(lambda: READY.search(self.output()), 20, "serve to say where to go")
        found = READY.search(self.output())
        assert found is not None
        return found

    def workers(self) -> list[psutil.Process]:
        children = psutil.Process(self.process.pid).children()
        return [p for p in children if "worker" in p.cmdline()]

    def url(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/signal/?room={room}"


@pytest.fixture
def first(tmp_path: Path, io_loop: object) -> Iterator[Serve]:
    serve = Serve(tmp_path, free_port(), name="first")
    try:
        serve.wait_ready()
        yield serve
    finally:
        Client.close_all()
        stop(serve.process)


@contextlib.contextmanager
def held_port(reuse_port: bool = False) -> Iterator[int]:
    """A port this test process listens on, like any other program."""
    with socket.socket() as sock:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def assert_serves_rooms(url: str, rooms: int = 8) -> None:
    """Two clients per room both get ``joined`` and relay a message; enough rooms to reach both
    workers (``SO_REUSEPORT``)."""
    for _ in range(rooms):
        room = uuid.uuid4().hex
        a = await Client.connect(url + room)
        assert (await a.recv())["type"] == "joined"
        b = await Client.connect(url + room)
        joined = await b.recv()
        assert joined["type"] == "joined" and joined["peers"] == 2, joined
        await a.recv_type("peer-joined")
        b.send({"type": "offer", "sdp": room})
        assert (await a.recv_type("offer"))["sdp"] == room
        a.send({"type": "answer", "sdp": room})
        assert (await b.recv_type("answer"))["sdp"] == room
        a.close()
        b.close()


def listening_pids(port: int) -> set[int]:
    return {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
    }


# --- a second deployment on the same port -------------------------------------------------


async def test_a_second_serve_on_the_same_port_is_refused_and_the_first_serves_on(
    first: Serve,
) -> None:
    router = first.wait_ready().group(3)
    workers = {w.pid for w in first.workers()}
    second = run("serve", "--workers", "2", "--port", str(first.port), *FAST)
    assert second.code == CANNOT_START
    assert second.took < 10
    assert second.lines == [
        f"mcp-tornado: port {first.port} on 127.0.0.1 is already served by another mcp-tornado "
        f"deployment (router {router}, worker pid {second.lines[0].rsplit(' ', 1)[1][:-1]})"
    ], second.lines
    pid = int(second.lines[0].rsplit(" ", 1)[1][:-1])
    assert pid in workers
    assert "Traceback" not in second.err
    # The first deployment was not disturbed: same workers, alone on the port, serving.
    assert {w.pid for w in first.workers()} == workers
    assert listening_pids(first.port) == workers
    await assert_serves_rooms(first.url(""))


def test_two_serves_started_at_once_on_one_port_one_wins(tmp_path: Path) -> None:
    # Both may pass serve's own check before either has a worker: the workers' claims decide.
    for attempt in range(3):
        _race(tmp_path, attempt)


def _race(tmp_path: Path, attempt: int) -> None:
    port = free_port()
    args = ("--log-level", "WARNING", "serve", "--workers", "2", "--port", str(port), *FAST)
    logs = [tmp_path / f"race-{attempt}-{i}.log" for i in range(2)]
    serves = [spawn(*args, log=log) for log in logs]
    try:
        wait_until(lambda: any(s.poll() is not None for s in serves), 20, "one to give up")
        lost = next(i for i, s in enumerate(serves) if s.poll() is not None)
        assert serves[lost].returncode == CANNOT_START
        output = logs[lost].read_text()
        refusals = [ln for ln in output.splitlines() if ln.startswith("mcp-tornado: ")]
        assert len(refusals) == 1 and "already served by another" in refusals[0], output
        assert "Traceback" not in output
        winner = serves[1 - lost]
        wait_until(lambda: ready(port), 15, "the winner to serve")
        assert winner.poll() is None
        children = psutil.Process(winner.pid).children()
        workers = {p.pid for p in children if "worker" in p.cmdline()}
        wait_until(lambda: listening_pids(port) == workers, 10, "the winner's workers")
    finally:
        for process in serves:
            stop(process)


def test_a_worker_of_another_router_is_refused_one_of_the_same_router_shares(
    tmp_path: Path,
) -> None:
    port = free_port()
    endpoint = f"ipc://{tmp_path}/a.ipc"
    log = tmp_path / "a.log"
    router = spawn("router", "--bind", endpoint, *FAST, log=log)
    workers = []
    try:
        workers.append(spawn("worker", "--router", endpoint, "--port", str(port), *FAST, log=log))
        wait_until(lambda: ready(port), 15, "the first worker")
        other = run("worker", "--router", f"ipc://{tmp_path}/b.ipc", "--port", str(port), *FAST)
        assert other.code == CANNOT_START
        assert other.lines == [
            f"mcp-tornado: port {port} on 127.0.0.1 is already served by another mcp-tornado "
            f"deployment (router {endpoint}, worker pid {workers[0].pid})"
        ]
        # A second worker of the same router is the same deployment: it shares the port.
        workers.append(spawn("worker", "--router", endpoint, "--port", str(port), *FAST, log=log))
        wait_until(lambda: len(listening_pids(port)) == 2, 15, "both workers to listen")
        assert listening_pids(port) == {w.pid for w in workers}
        # And one on 0.0.0.0 of another router overlaps 127.0.0.1: refused too.
        wide = run("worker", "--router", f"ipc://{tmp_path}/c.ipc", "--host", "0.0.0.0",
                   "--port", str(port), *FAST)  # fmt: skip
        assert wide.code == CANNOT_START and "already served by another" in wide.err
        assert all(w.poll() is None for w in workers)
    finally:
        for process in workers:
            stop(process)
        stop(router)


# --- a port held by another program ----------------------------------------------------------


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "SO_REUSEPORT"])
def test_serve_on_a_port_held_by_a_plain_socket_exits_at_once(reuse_port: bool) -> None:
    with held_port(reuse_port) as port:
        done = run("serve", "--workers", "2", "--port", str(port), *FAST)
    assert done.code == CANNOT_START
    assert done.took < 5
    assert len(done.lines) == 1, done.lines
    line = done.lines[0]
    assert line.startswith(f"mcp-tornado: port {port} on 127.0.0.1 is already in use by ")
    assert line.endswith(f"(pid {os.getpid()})"), line  # this test process holds it
    assert "Traceback" not in done.err and "Errno" not in done.err


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "SO_REUSEPORT"])
def test_a_worker_on_a_port_held_by_a_plain_socket_exits_at_once(
    tmp_path: Path, reuse_port: bool
) -> None:
    with held_port(reuse_port) as port:
        # No router at all: the port is checked before the worker waits for one.
        done = run("worker", "--router", f"ipc://{tmp_path}/none.ipc", "--port", str(port))
    assert done.code == CANNOT_START
    assert len(done.lines) == 1 and "already in use by" in done.lines[0], done.lines
    assert "Traceback" not in done.err


def test_serve_with_a_router_that_cannot_bind_stops_instead_of_restarting_it() -> None:
    with held_port() as taken:
        done = run(
            "--log-level", "WARNING", "serve", "--workers", "2", "--port", str(free_port()),
            "--router-endpoint", f"tcp://127.0.0.1:{taken}", "--insecure", *FAST,
        )  # fmt: skip
    assert done.code == CANNOT_START
    assert done.took < 10
    assert done.lines == [
        f"mcp-tornado: router cannot bind tcp://127.0.0.1:{taken}: Address already in use"
    ], done.lines


def test_serve_on_an_address_this_machine_does_not_have() -> None:
    done = run("serve", "--workers", "1", "--host", "192.0.2.1", "--port", str(free_port()))
    assert done.code == CANNOT_START
    assert len(done.lines) == 1 and "no such address on this machine" in done.lines[0]


@pytest.mark.parametrize(
    ("command", "settings", "line"),
    [
        ("worker", '{"port": -1}', "bad $MCP_TORNADO_SETTINGS: --port must be at least 0, not -1"),
        (
            "router",
            '{"bind": "tcp://nope", "insecure": true}',
            "router cannot bind tcp://nope: Invalid argument",
        ),
    ],
)
def test_bad_settings_handed_to_a_child_are_final(command: str, settings: str, line: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", command],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "MCP_TORNADO_SETTINGS": settings},
    )
    assert done.returncode == CANNOT_START
    assert done.stderr == f"mcp-tornado: {line}\n"


def test_a_child_that_cannot_start_is_not_restarted_and_its_reason_is_kept() -> None:
    cannot = [
        sys.executable, "-c",
        "from mcp_tornado.supervisor import cannot_start; cannot_start('no  such\\nthing')",
    ]  # fmt: skip
    crashing = [sys.executable, "-c", "raise SystemExit(1)"]
    sleeping = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor(router=sleeping, workers=[crashing, cannot], shutdown_timeout=2)
    started = time.monotonic()
    assert supervisor.run() == CANNOT_START
    assert time.monotonic() - started < 5
    assert supervisor.failure == "no such thing"  # one line, whatever the child said
    assert supervisor.workers[1].restarts == 0
    router = supervisor.router.process
    assert router is not None and router.poll() is not None


def test_a_restarted_child_still_reports_to_the_supervisor(tmp_path: Path) -> None:
    # Crashes on its first start; its second process reports ready, and then a child that
    # crashed once and cannot start on its restart stops everything with its reason.
    script = (
        "import pathlib, sys, time\n"
        "from mcp_tornado.supervisor import cannot_start, report\n"
        "mark = pathlib.Path(sys.argv[1])\n"
        "if not mark.exists():\n"
        "    mark.touch(); raise SystemExit(1)\n"
        "if sys.argv[2] == 'ready':\n"
        "    report('ready'); time.sleep(60)\n"
        "cannot_start('gone for good')\n"
    )
    sleeping = [sys.executable, "-c", "import time; time.sleep(60)"]
    flaky = [[sys.executable, "-c", script, str(tmp_path / name), "ready"] for name in "ab"]
    supervisor = Supervisor(sleeping, flaky, 2, ready_message="all ready")
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        wait_until(lambda: supervisor._announced, 15, "the restarted workers to be ready")
    finally:
        supervisor.stop()
        thread.join(10)
    assert [w.restarts for w in supervisor.workers] == [1, 1]
    doomed = [sys.executable, "-c", script, str(tmp_path / "c"), "give up"]
    supervisor = Supervisor(sleeping, [doomed], 2)
    assert supervisor.run() == CANNOT_START
    assert supervisor.failure == "gone for good"
    assert supervisor.workers[0].restarts == 1


# --- where to go ------------------------------------------------------------------------------


async def test_serve_says_once_where_to_go_when_every_worker_listens(first: Serve) -> None:
    found = first.wait_ready()
    assert int(found.group(1)) == first.port and found.group(2) == "2"
    assert found.group(3).startswith("ipc://") and found.group(3).endswith(".ipc")
    assert {w.pid for w in first.workers()} == listening_pids(first.port)
    assert "serving on" not in first.output()  # no line per worker
    # A restarted worker does not repeat it.
    victim = first.workers()[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)
    wait_until(lambda: len(listening_pids(first.port)) == 2, 15, "the worker to come back")
    assert len(READY.findall(first.output())) == 1
    await assert_serves_rooms(first.url(""), rooms=2)


def test_claims_follow_their_process_and_port_zero_claims_nothing(tmp_path: Path) -> None:
    port = free_port()
    held = ports.claim("127.0.0.1", port, "ipc:///a")
    try:
        ports.claim("127.0.0.1", port, "ipc:///a").release()  # same deployment: shares
        with pytest.raises(ports.CannotStart, match="already served by another"):
            ports.claim("127.0.0.1", port, "ipc:///b")
        with pytest.raises(ports.CannotStart):
            ports.claim("", port, "ipc:///b")  # the wildcard overlaps 127.0.0.1
        with pytest.raises(ports.CannotStart):
            ports.check("127.0.0.1", port)  # serve: a new deployment, always refused
        ports.claim("127.0.0.2", port, "ipc:///b").release()  # another address: no overlap
    finally:
        held.release()
    ports.claim("127.0.0.1", port, "ipc:///b").release()  # released: free for anyone
    ports.claim("127.0.0.1", 0, "ipc:///a").release()
    ports.claim("127.0.0.1", 0, "ipc:///b").release()
