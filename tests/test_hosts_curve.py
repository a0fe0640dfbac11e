"""Worker hosts over tcp:// with CURVE, on emulated hosts (network namespaces, see tests/netns.py).

A router host, two worker hosts and a client host on one bridge: every pair
of peers is split across the worker hosts, so every message crosses the
router's link, encrypted and authenticated (or, to show that the capture check
can fail, in plain text with ``--insecure``).  Root only; skipped elsewhere.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_tornado import curve
from tests.netns import Host, HostNet, hosts, no_leftovers

__all__ = ["hosts", "no_leftovers"]  # fixtures, used by name

pytestmark = pytest.mark.usefixtures("no_leftovers")

ROUTER_ADDRESS = "10.203.0.1"
PORT = 8000
BEAT = ["--heartbeat-interval", "0.2", "--heartbeat-liveness", "5"]  # dead after 1 s
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Deployment:
    """The emulated hosts of one test, and where their logs are."""

    net: HostNet
    router: Host
    workers: list[Host]
    client: Host
    tmp: Path

    def url(self, worker: int) -> str:
        return f"ws://{self.workers[worker].address}:{PORT}/ws/signal/"

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, name: str, text: str, timeout: float = 60) -> float:
        """Wait until ``text`` is in ``name``'s log; the time it took."""
        started = time.monotonic()
        while text not in self.log(name):
            if time.monotonic() - started > timeout:
                raise AssertionError(f"no {text!r} in {name}'s log:\n{self.log(name)}")
            time.sleep(0.05)
        return time.monotonic() - started

    def client_run(self, *args: str, timeout: float = 180) -> dict[str, object]:
        """``tests/hosts_client.py ARGS`` on the client host; its JSON answer."""
        done = self.client.run(
            [sys.executable, "-m", "tests.hosts_client", *args, self.url(0), self.url(1)],
            timeout,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert isinstance(result, dict)
        return result


def mcp(*args: str) -> list[str]:
    return [sys.executable, "-m", "mcp_tornado", "--log-level", "INFO", *args]


def make_keys(tmp: Path) -> Path:
    """Key pairs for the router, both worker hosts and a stranger; the folder of allowed ones."""
    keys = tmp / "keys"
    for name in ("router", "wa", "wb", "stranger"):
        curve.create_keys(keys, name)
    allowed = keys / "allowed"
    allowed.mkdir()
    for name in ("wa", "wb"):
        shutil.copy(keys / f"{name}.key", allowed)
    return keys


def deploy(
    net: HostNet, tmp: Path, secure: bool, keys_of: tuple[str, str] = ("wa", "wb")
) -> Deployment:
    """Start a router and two workers on their hosts; wait until the workers serve."""
    router = net.add("router", ROUTER_ADDRESS)
    workers = [net.add("wa", "10.203.0.2"), net.add("wb", "10.203.0.3")]
    client = net.add("client", "10.203.0.4")
    keys = make_keys(tmp)
    endpoint = f"tcp://{ROUTER_ADDRESS}:5555"
    router_security = ["--insecure"]
    if secure:
        router_security = ["--curve-secret-key-file", str(keys / "router.key_secret")]
        router_security += ["--curve-allowed-dir", str(keys / "allowed")]
    router.spawn(
        mcp("router", "--bind", endpoint, *BEAT, "--resync-grace", "0.3", *router_security),
        tmp / "router.log",
    )
    for index, (host, name) in enumerate(zip(workers, keys_of, strict=True)):
        security = ["--insecure"]
        if secure:
            security = ["--curve-secret-key-file", str(keys / f"{name}.key_secret")]
            security += ["--curve-server-key-file", str(keys / "router.key")]
        where = ["--router", endpoint, "--host", host.address, "--port", str(PORT)]
        options = [*BEAT, "--static-dir", str(tmp), "--rate-limit", "0"]
        host.spawn(mcp("worker", *where, *options, *security), tmp / f"worker{index}.log")
    deployment = Deployment(net, router, workers, client, tmp)
    deployment.wait_log("router", "listening on")
    return deployment


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    tmp_path.chmod(0o755)  # the processes in the namespaces run as us, but be plain about it
    yield tmp_path


def serving(deployment: Deployment) -> None:
    for index in (0, 1):
        deployment.wait_log(f"worker{index}", "serving on")


ROOMS, EACH_WAY = 40, 250
MESSAGES = ROOMS * 2 * EACH_WAY


def relay_split_pairs(deployment: Deployment) -> dict[str, object]:
    """(1) Numbered messages both ways in rooms split across the two worker hosts."""
    report = deployment.client_run("pairs", "--rooms", str(ROOMS), "--messages", str(EACH_WAY))
    assert report == report | {"delivered": MESSAGES, "cross_room": 0, "duplicates": 0}
    assert report == report | {"out_of_order": 0, "missing": 0, "from_self": 0}
    return report


def test_split_pairs_relay_in_order_and_the_wire_never_shows_an_sdp(
    hosts: HostNet, tmp: Path
) -> None:
    deployment = deploy(hosts, tmp, secure=True)
    serving(deployment)
    assert "CURVE on" in deployment.log("router")
    # (1) Every pair split across the two worker hosts, numbered messages both ways.
    report = relay_split_pairs(deployment)
    # (6) A relayed SDP never appears on the router host's cable in clear.
    marker = f"v=0 o=mcp-canary-{uuid.uuid4().hex} IN IP4 203.0.113.7"
    with hosts.capture(deployment.router) as seen:
        assert deployment.client_run("offer", "--sdp", marker) == {"received": True}
    assert len(seen) > 1000, "the capture saw nothing: it proves nothing"
    assert marker.encode() not in seen
    timing = deployment.client_run("rtt", "--rounds", "300")
    print(f"\nCURVE on: {MESSAGES} messages in {report['seconds']}s, round trips {timing}")


def test_with_insecure_the_same_capture_shows_the_sdp(hosts: HostNet, tmp: Path) -> None:
    deployment = deploy(hosts, tmp, secure=False)
    serving(deployment)
    assert "WARNING" in deployment.log("router") and "PLAIN TEXT" in deployment.log("router")
    marker = f"v=0 o=mcp-canary-{uuid.uuid4().hex} IN IP4 203.0.113.7"
    with hosts.capture(deployment.router) as seen:
        assert deployment.client_run("offer", "--sdp", marker) == {"received": True}
    assert marker.encode() in seen
    report = relay_split_pairs(deployment)
    timing = deployment.client_run("rtt", "--rounds", "300")
    print(f"\n--insecure: {MESSAGES} messages in {report['seconds']}s, round trips {timing}")


def test_a_worker_host_with_an_unknown_key_is_refused(hosts: HostNet, tmp: Path) -> None:
    deployment = deploy(hosts, tmp, secure=True, keys_of=("wa", "stranger"))
    deployment.wait_log("worker0", "serving on")
    deployment.wait_log("worker1", "refused this worker's CURVE key")
    deployment.wait_log("router", f"refused a worker from {deployment.workers[1].address}")
    time.sleep(2)  # it keeps retrying, and stays not ready: it never listens
    assert "serving on" not in deployment.log("worker1")
    # Not ready, so not listening: nothing answers on its port.
    probe = f"import socket; socket.create_connection(('10.203.0.3', {PORT}), timeout=5)"
    done = deployment.client.run([sys.executable, "-c", probe], 30)
    assert "ConnectionRefusedError" in done.stderr, done.stderr
    assert deployment.log("worker1").count("refused this worker's CURVE key") == 1


def test_a_partitioned_worker_host_is_dropped_then_re_registers_without_ghosts(
    hosts: HostNet, tmp: Path
) -> None:
    # (5) The router host and worker host B stop hearing each other (their packets
    # are dropped; B's clients keep their connections) for longer than the
    # heartbeat timeout (0.2 s x 5), then the link heals.
    deployment = deploy(hosts, tmp, secure=True)
    serving(deployment)
    rooms = 5
    watch = deployment.client.spawn(
        [sys.executable, "-m", "tests.hosts_client", "watch", deployment.url(0),
         deployment.url(1), "--rooms", str(rooms), "--seconds", "12"],
        tmp / "watch.log",
    )  # fmt: skip
    deployment.wait_log("watch", '{"open":')
    time.sleep(1.0)
    t0 = float(json.loads(deployment.log("watch").splitlines()[0])["open"])
    cut = time.time() - t0
    with hosts.partition(deployment.router, deployment.workers[1]):
        time.sleep(3.0)
    healed = time.time() - t0
    watch.wait(120)
    events = json.loads(deployment.log("watch").splitlines()[-1])["events"]
    told: list[float] = []
    refused: list[float] = []
    for index in range(rooms):
        room = f"watch-{index}"
        seen_a = [(t, what) for t, r, side, what in events if r == room and side == "a"]
        seen_b = [(t, what) for t, r, side, what in events if r == room and side == "b"]
        # A's peer (the reachable host) is told its partner left, during the partition ...
        leave = next(t for t, what in seen_a if what == "leave")
        assert cut < leave < healed, (cut, leave, healed)
        assert any(what == "peer-left" for _, what in seen_a)
        told.append(leave - cut)
        # ... and hears nothing from that partner afterwards (no ghost pairing).
        assert all(what != "candidate" for t, what in seen_a if t > leave), seen_a
        # B's peer is refused once its host re-registered: 1013, reconnect afresh.
        closed = next(t for t, what in seen_b if what.startswith("closed"))
        assert closed > healed and seen_b[-1][1] == "closed 1013", seen_b
        refused.append(closed - healed)
    log = deployment.log("router")
    assert "missed its heartbeats" in log
    assert f"registered with {rooms} peers (0 rejected, {rooms} refused)" in log
    # No ghost holds a slot: the same rooms take a fresh pair each, across both hosts
    # (once the watch's own peers, which just closed, have left).
    time.sleep(2)
    report = deployment.client_run("pairs", "--rooms", str(rooms), "--prefix", "watch")
    assert report == report | {"delivered": rooms * 2 * 50, "missing": 0, "duplicates": 0}
    print(
        f"\npartition: partners told after {max(told):.2f}s (max; heartbeat timeout 1.0s), "
        f"B's peers refused {min(refused):.2f}-{max(refused):.2f}s after the heal"
    )
