"""``serve`` against routers it did not start (a worker host), local router shards, shard keys.

Real processes on 127.0.0.1: ``serve --router`` against a router started
apart (over ipc://, and over tcp:// with CURVE where the two router shards
have different key pairs, one ``--curve-server-key-file`` each), a call
relayed across; ``serve --shards 2`` with rooms on both shards, one shard's
router killed with ``kill -9``, restarted by serve and its rooms rebuilt from
the workers; and the mixes of flags that cannot work, each one line and exit
status 2.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mcp_tornado import cli, curve
from mcp_tornado.settings import ServeSettings, WorkerSettings
from tests.support import FAST, Client, free_port, ready, spawn, stop, wait_until
from tests.test_shards_cluster import relays_again, rooms_of, shard_health

pytestmark = [pytest.mark.gen_test(timeout=120), pytest.mark.usefixtures("close_clients")]


class Processes:
    """Everything a test started, stopped (process group and all) when it ends, also on failure."""

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "processes.log"
        self.started: list[subprocess.Popen[bytes]] = []

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        process = spawn(*args, log=self.log)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            stop(process)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def processes(tmp_path: Path, io_loop: object) -> Iterator[Processes]:
    made = Processes(tmp_path)
    try:
        yield made
    finally:
        Client.close_all()
        made.stop_all()


def children(serve: subprocess.Popen[bytes]) -> dict[str, psutil.Process]:
    """serve's live children by their name (``router-0``, ``worker-1``...)."""
    found = {}
    for child in psutil.Process(serve.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found[child.environ()["MCP_TORNADO_CHILD"]] = child
        except (psutil.Error, KeyError):  # exited meanwhile, or not yet exec'd
            pass
    return found


def url(port: int, room: str) -> str:
    return f"ws://127.0.0.1:{port}/ws/signal/?room={room}"


async def call(port: int, room: str) -> tuple[Client, Client]:
    """Two peers of ``room`` on ``port``; an offer and an answer relayed between them."""
    a = await Client.connect(url(port, room))
    await a.recv_type("joined")
    b = await Client.connect(url(port, room))
    await b.recv_type("joined")
    await a.recv_type("peer-joined")
    a.send({"type": "offer", "sdp": f"offer {room}"})
    assert (await b.recv_type("offer"))["sdp"] == f"offer {room}"
    b.send({"type": "answer", "sdp": f"answer {room}"})
    assert (await a.recv_type("answer"))["sdp"] == f"answer {room}"
    return a, b


def router(processes: Processes, bind: str, *args: str) -> subprocess.Popen[bytes]:
    return processes.spawn(
        "router", "--bind", bind, "--resync-grace", "3", "--expected-workers", "2", *FAST, *args
    )


def serve(processes: Processes, port: int, *args: str) -> subprocess.Popen[bytes]:
    return processes.spawn(
        "serve", "--workers", "2", "--port", str(port), "--shutdown-timeout", "3", *FAST, *args
    )


# --- serve against routers it did not start ------------------------------------------------


async def test_serve_links_its_workers_to_a_router_it_did_not_start(
    processes: Processes, tmp_path: Path
) -> None:
    endpoint = f"ipc://{tmp_path}/remote.ipc"
    remote = router(processes, endpoint)
    port = free_port()
    host = serve(processes, port, "--router", endpoint)
    wait_until(lambda: ready(port), 30, "serve's workers to register with the remote router")
    assert set(children(host)) == {"worker-0", "worker-1"}  # no router of its own
    for _ in range(4):  # pairs land on both workers (SO_REUSEPORT)
        await call(port, uuid.uuid4().hex)
    host.send_signal(signal.SIGTERM)
    assert host.wait(15) == 0
    assert remote.poll() is None, "stopping the worker host must leave the router running"
    assert Path(endpoint.removeprefix("ipc://")).exists(), "serve removed a socket not its own"


class ShardKeys:
    """Two router shards with a key pair each, and a worker host's pair allowed by both."""

    def __init__(self, tmp: Path) -> None:
        self.routers = [curve.create_keys(tmp / f"router{i}", f"router{i}") for i in range(2)]
        self.worker_public, self.worker_secret = curve.create_keys(tmp / "web1", "web1")
        self.allowed = tmp / "allowed"
        self.allowed.mkdir()
        shutil.copy(self.worker_public, self.allowed)

    def router_flags(self, shard: int) -> list[str]:
        secret = str(self.routers[shard][1])
        return ["--curve-secret-key-file", secret, "--curve-allowed-dir", str(self.allowed)]

    def worker_flags(self, order: tuple[int, ...] = (0, 1)) -> list[str]:
        flags = ["--curve-secret-key-file", str(self.worker_secret)]
        for shard in order:
            flags += ["--curve-server-key-file", str(self.routers[shard][0])]
        return flags


async def test_a_worker_host_reaches_two_curve_shards_each_with_its_own_key_pair(
    processes: Processes, tmp_path: Path
) -> None:
    keys = ShardKeys(tmp_path)
    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
    for shard, endpoint in enumerate(endpoints):
        shards = ["--shard", str(shard), "--shards", "2"]
        router(processes, endpoint, *shards, *keys.router_flags(shard))
    routers = [arg for endpoint in endpoints for arg in ("--router", endpoint)]
    port = free_port()
    serve(processes, port, *routers, *keys.worker_flags())
    wait_until(lambda: shard_health(port) == [True, True], 30, "both CURVE shards to take serve")
    for shard in (0, 1):
        for room in rooms_of(shard, 2):
            await call(port, room)
    # The keys matter, and their order does: swapped, each shard refuses the handshake.
    swapped = free_port()
    processes.spawn(
        "worker", *routers, "--port", str(swapped), *FAST, *keys.worker_flags(order=(1, 0))
    )
    wait_until(lambda: "CURVE handshake" in processes.logs(), 30, "the refused handshakes")
    assert not ready(swapped) and shard_health(swapped) != [True, True]


# --- local router shards -------------------------------------------------------------------


async def test_serve_runs_two_local_shards_and_restarts_one_killed_rebuilding_its_rooms(
    processes: Processes,
) -> None:
    port = free_port()
    host = serve(processes, port, "--shards", "2", "--resync-grace", "3")
    wait_until(lambda: shard_health(port) == [True, True], 30, "both workers on both shards")
    named = children(host)
    assert {"router-0", "router-1", "worker-0", "worker-1"} <= set(named)
    room0, room1 = rooms_of(0, 1)[0], rooms_of(1, 1)[0]
    a0, b0 = await call(port, room0)
    a1, b1 = await call(port, room1)

    victim = named["router-0"]
    victim.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    victim.wait(5)
    # Shard 1's room is not affected while shard 0 is down.
    a1.send({"type": "offer", "sdp": "during"})
    assert (await b1.recv_type("offer"))["sdp"] == "during"
    wait_until(
        lambda: "router-0" in children(host) and children(host)["router-0"].pid != victim.pid,
        30,
        "serve to restart shard 0's router",
    )
    wait_until(lambda: shard_health(port) == [True, True], 30, "the workers back on shard 0")
    back = time.monotonic() - killed
    # Shard 0's room was rebuilt from the workers: its pair relays again, and it is
    # still full (the rebuilt router holds both peers: a third is refused).
    await relays_again(a0, b0, timeout=30)
    third = await Client.connect(url(port, room0))
    assert (await third.recv_type("error"))["message"] == "Room is full"
    print(f"\nshard 0 killed -> restarted by serve, both workers registered: {back:.2f} s")
    await call(port, rooms_of(0, 1)[0])  # and new rooms of shard 0 work


# --- mixes that cannot work: one line, exit status 2 --------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--router", "ipc:///tmp/a", "--router-endpoint", "ipc:///tmp/b"],
            "--router-endpoint: the endpoint of serve's own router, but --router runs none",
        ),
        (
            ["--shards", "2", "--router-endpoint", "ipc:///tmp/b"],
            "--router-endpoint: one router's endpoint, but --shards runs several",
        ),
        (["--router", "ipc:///tmp/a", "--shards", "2"], "--shards: 2, but --router lists 1 router"),
        (["--router", "ipc:///tmp/a", "--metrics-port", "9100"], "--metrics-port: the routers"),
        (["--router", "ipc:///tmp/a", "--curve-allowed-dir", "/tmp"], "--curve-allowed-dir: a"),
        (["--shards", "2", "--metrics-port", "65535"], "--metrics-port: shard I serves"),
        (["--router", "tcp://10.0.0.5:5555"], "--router: tcp://10.0.0.5:5555 crosses a network"),
    ],
)
def test_a_mix_that_cannot_work_is_one_line_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.parse_settings(["serve", *argv])
    assert done.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_key_count_that_is_not_one_or_one_per_shard_is_one_line_and_status_2(
    command: str, tmp_path: Path
) -> None:
    keys = ShardKeys(tmp_path)
    routers = ["--router", "tcp://10.0.0.5:5555", "--router", "tcp://10.0.0.6:5555"]
    flags = [*keys.worker_flags((0, 1)), "--curve-server-key-file", str(keys.routers[1][0])]
    done = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", command, *routers, *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "mcp-tornado: --curve-server-key-file: 3 given for 2 --router endpoints: give one "
        "for every shard, or one per shard in --router order"
    ]


def test_each_shard_gets_its_key_and_one_key_serves_all(tmp_path: Path) -> None:
    keys = ShardKeys(tmp_path)
    routers = ["--router", "tcp://10.0.0.5:5555", "--router", "tcp://10.0.0.6:5555"]
    settings = cli.parse_settings(["serve", *routers, *keys.worker_flags((1, 0))])
    assert isinstance(settings, ServeSettings)
    routers_run, worker = settings.children(settings.remote_routers)
    assert routers_run == ()  # a worker host runs no router
    assert worker.link.endpoints == ("tcp://10.0.0.5:5555", "tcp://10.0.0.6:5555")
    assert [worker.link.server_key_file(s) for s in (0, 1)] == [
        keys.routers[1][0],
        keys.routers[0][0],
    ]
    one = cli.parse_settings(["worker", *routers, *keys.worker_flags((0,))])
    assert isinstance(one, WorkerSettings)
    assert [one.link.server_key_file(s) for s in (0, 1)] == [keys.routers[0][0]] * 2


def test_local_shards_each_bind_their_own_endpoint_and_metrics_port() -> None:
    settings = cli.parse_settings(
        ["serve", "--shards", "3", "--workers", "2", "--metrics-port", "9100"]
    )
    assert isinstance(settings, ServeSettings)
    routers, worker = settings.children(("ipc:///a", "ipc:///b", "ipc:///c"))
    assert [(r.bind, r.shard, r.shards, r.metrics_port) for r in routers] == [
        ("ipc:///a", 0, 3, 9100),
        ("ipc:///b", 1, 3, 9101),
        ("ipc:///c", 2, 3, 9102),
    ]
    assert {r.expected_workers for r in routers} == {2}
    assert worker.link.endpoints == ("ipc:///a", "ipc:///b", "ipc:///c")
