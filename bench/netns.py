"""Emulated hosts on one machine: network namespaces joined by veth pairs to a bridge.

Used by ``python -m bench hosts`` (bench/hosts.py) and, through the pytest
fixtures of tests/netns.py, by the emulated-host tests.  Usage (as root)::

    net = HostNet()  # or HostNet(prefix="mcpb-", link_prefix="mb") for another owner
    try:
        router = net.add("router", "10.203.0.1")
        worker = net.add("wa", "10.203.0.2")
        process = router.spawn(["python", "-m", "mcp_tornado", "router", ...], log=path)
        worker.link_down()  # a partition: its cable is cut
        with net.capture(router) as seen: ...  # raw bytes seen on the router host's cable
    finally:
        net.close()

Each host is a namespace ``PREFIX SUFFIX-NAME`` (``mcpt-3f9a1c-router``) whose
``eth0`` is one end of a veth pair; the other end (``LINK_PREFIX SUFFIX N``,
``mt3f9a1c0``) is a port of the bridge ``LINK_PREFIX SUFFIX b`` in the root
namespace.  Addresses are private test addresses chosen by the caller (the
tests use ``10.203.0.0/24``, the bench ``10.204.0.0/24``) that exist only
inside the namespaces: the bridge has no address, so nothing here is reachable
from, or reaches, the machine's own network.  ``SUFFIX`` is random, so
concurrent runs do not collide.

:meth:`HostNet.close` removes everything, and must run also when the caller
fails: processes (their whole process group, SIGKILL after a grace period),
the namespaces, the veths and the bridge.  :func:`leftovers` lists anything
with a prefix still present.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

PREFIX = "mcpt-"  # namespaces (the tests'; the bench passes its own)
LINK_PREFIX = "mt"  # links (interface names are at most 15 characters: 2 + 6 + 3 + "i")
SUBNET_PREFIX = 24
ETH_P_ALL = 0x0003


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def why_unavailable() -> str | None:
    """Why namespaces cannot be built here, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root (the CI runs as root)"
    if shutil.which("ip") is None:
        return "network namespace tests need iproute2's `ip`"
    probe = f"{PREFIX}probe-{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not allowed here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def leftovers(
    suffixes: set[str] | None = None, prefix: str = PREFIX, link_prefix: str = LINK_PREFIX
) -> list[str]:
    """Namespaces and links with these prefixes (none should outlive their user).

    ``suffixes``: only those of these networks (:class:`HostNet` suffixes).
    """
    ours = re.compile(rf"^{re.escape(link_prefix)}[0-9a-f]{{6}}(b|[0-9]+i?)$")
    namespaces = _ip("netns", "list", check=False).stdout.split("\n")
    links = _ip("-o", "link", "show", check=False).stdout.split("\n")
    found = [line.split()[0] for line in namespaces if line.startswith(prefix)]
    for line in links:
        parts = line.split(": ")
        if len(parts) > 1 and ours.match(name := parts[1].split("@")[0]):
            found.append(name)
    if suffixes is not None:
        found = [name for name in found if any(suffix in name for suffix in suffixes)]
    return found


class Host:
    """One emulated host: a namespace with one address on the shared bridge."""

    def __init__(self, net: HostNet, name: str, address: str, index: int) -> None:
        self.net = net
        self.name = name
        self.address = address
        self.namespace = f"{net.prefix}{net.suffix}-{name}"
        self.cable = f"{net.link_prefix}{net.suffix}{index}"  # the veth end on the bridge
        self.processes: list[subprocess.Popen[bytes]] = []

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def spawn(
        self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` on this host, in its own process group, output to ``log``.

        A process group, not a session of its own: with Linux autogroup every session
        gets an equal share of the CPU, so servers in sessions of their own would get
        more of it the more processes a set-up has (a router and two worker hosts: three
        shares against the load client's one; ``serve`` on one host: one).
        """
        with open(log, "ab") as out:
            process = subprocess.Popen(
                self.command(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
                env={**os.environ, **(env or {})},
            )
        self.processes.append(process)
        return process

    def run(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on this host to completion."""
        return subprocess.run(
            self.command(argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def link_down(self) -> None:
        """Cut this host's cable (a partition: packets are lost, nothing is reset)."""
        _ip("link", "set", self.cable, "down")

    def link_up(self) -> None:
        _ip("link", "set", self.cable, "up")

    def stop_all(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        self.processes.clear()

    def kill_strays(self, timeout: float = 10) -> None:
        """SIGKILL whatever still runs in this namespace (``ip netns pids``).

        A process :meth:`stop_all` does not know: one whose ``spawn`` was cut
        short by Ctrl-C or SIGTERM after it started, or a child that left its
        process group.
        """
        deadline = time.monotonic() + timeout
        while pids := _ip("netns", "pids", self.namespace, check=False).stdout.split():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)


class HostNet:
    """A bridge and the hosts plugged into it; :meth:`close` removes all of it."""

    def __init__(self, prefix: str = PREFIX, link_prefix: str = LINK_PREFIX) -> None:
        self.prefix = prefix
        self.link_prefix = link_prefix
        self.suffix = uuid.uuid4().hex[:6]
        self.bridge = f"{link_prefix}{self.suffix}b"
        self.hosts: list[Host] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")

    def add(self, name: str, address: str) -> Host:
        host = Host(self, name, address, len(self.hosts))
        self.hosts.append(host)  # before anything exists, so close() removes what was made
        inside = f"{host.cable}i"
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.cable, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", host.namespace)
        _ip("link", "set", host.cable, "master", self.bridge)
        _ip("link", "set", host.cable, "up")
        ns = ("-n", host.namespace)
        _ip(*ns, "link", "set", inside, "name", "eth0")
        _ip(*ns, "addr", "add", f"{address}/{SUBNET_PREFIX}", "dev", "eth0")
        _ip(*ns, "link", "set", "eth0", "up")
        _ip(*ns, "link", "set", "lo", "up")
        return host

    @contextlib.contextmanager
    def capture(self, host: Host) -> Iterator[bytearray]:
        """Every byte that crosses ``host``'s cable while the block runs (AF_PACKET).

        Read in the root namespace on the bridge side of the cable, like a
        tap on the wire between the host and the switch.
        """
        seen = bytearray()
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((host.cable, 0))
        sock.settimeout(0.1)
        stopping = threading.Event()

        def read() -> None:
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    seen.extend(sock.recv(65536))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            yield seen
        finally:
            time.sleep(0.2)  # what is still on the wire
            stopping.set()
            reader.join(5)
            sock.close()

    @contextlib.contextmanager
    def partition(self, first: Host, second: Host) -> Iterator[None]:
        """Drop every packet between two hosts while the block runs; others are unaffected.

        A blackhole route to the other in each host: their packets vanish
        without an error or a reset (like a cut link between them), while
        both keep talking to every other host (the worker host's clients keep
        their connections).
        """
        routes = ((first, second), (second, first))
        try:
            for host, other in routes:
                _ip("-n", host.namespace, "route", "add", "blackhole", f"{other.address}/32")
            yield
        finally:
            for host, other in routes:
                _ip("-n", host.namespace, "route", "del", "blackhole", f"{other.address}/32",
                    check=False)  # fmt: skip

    def close(self) -> None:
        for host in self.hosts:
            host.stop_all()
        for host in self.hosts:
            host.kill_strays()
            _ip("netns", "del", host.namespace, check=False)
            _ip("link", "del", host.cable, check=False)  # gone with its namespace's end, usually
        _ip("link", "del", self.bridge, check=False)
