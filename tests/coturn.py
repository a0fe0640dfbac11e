"""A real coturn (Debian's ``turnserver``) for the TURN tests, on free loopback ports.

Usage::

    with running_coturn(tmp_path, secret) as turn:
        turn.uri("udp")          # "turn:127.0.0.1:PORT?transport=udp"
        turn.address             # ("127.0.0.1", PORT)

It checks the TURN REST API credentials that :mod:`mcp_tornado.ice` mints
(``use-auth-secret`` with ``static-auth-secret``).  The secret is written to
its config file (mode 0600), never to its command line.  It listens and
relays on 127.0.0.1 only, with ``allow-loopback-peers`` so that two peers of
this machine may relay to each other, and relay ports in a small free range.
It is stopped (SIGTERM, then SIGKILL) when the block ends, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TURNSERVER = "/usr/bin/turnserver"
REALM = "mcp-tornado.test"
RELAY_PORTS = 16  # relay (allocation) ports; each test allocates a few
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_MAGIC_COOKIE = 0x2112A442


@dataclass(frozen=True)
class Coturn:
    """A running ``turnserver``: where it listens, its relay ports, and its log."""

    host: str
    port: int
    relay_ports: range
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def uri(self, transport: str = "udp") -> str:
        return f"turn:{self.host}:{self.port}?transport={transport}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _bindable(port: int, kinds: tuple[int, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _free_listening_port() -> int:
    """A port free for both UDP and TCP (TURN listens on both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if _bindable(port, (socket.SOCK_STREAM,)):
            return port
    raise RuntimeError("no free port for coturn")


def _free_relay_range(count: int) -> range:
    """``count`` consecutive UDP ports that are free now (outside the kernel's ephemeral range)."""
    for _ in range(200):
        start = random.randrange(20_000, 32_000 - count)
        ports = range(start, start + count)
        if all(_bindable(port, (socket.SOCK_DGRAM,)) for port in ports):
            return ports
    raise RuntimeError("no free range of relay ports for coturn")


def _answers_stun(address: tuple[str, int]) -> bool:
    """Whether a STUN Binding request to ``address`` (UDP) gets its success response."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI", _BINDING_REQUEST, 0, _MAGIC_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, address)
            response = sock.recv(2048)
        except OSError:  # a timeout, or ICMP port unreachable: not listening yet
            return False
    kind, _, cookie = struct.unpack("!HHI", response[:8])
    return kind == _BINDING_SUCCESS and cookie == _MAGIC_COOKIE and response[8:20] == transaction


def require_turnserver() -> None:
    """Skip (or fail under CI) when coturn is not installed (``./test.sh`` installs it)."""
    if shutil.which("turnserver") is None and not Path(TURNSERVER).exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("turnserver missing: apt-get install -y coturn (./test.sh does)")
        pytest.skip("turnserver missing: apt-get install -y coturn (./test.sh does)")


@contextlib.contextmanager
def running_coturn(tmp: Path, secret: bytes, timeout: float = 20) -> Iterator[Coturn]:
    """Start ``turnserver`` checking credentials made with ``secret``; stop it on exit."""
    require_turnserver()
    folder = tmp / "coturn"
    folder.mkdir()
    port, relay = _free_listening_port(), _free_relay_range(RELAY_PORTS)
    turn = Coturn("127.0.0.1", port, relay, folder / "turnserver.log")
    config = folder / "turnserver.conf"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(
            "\n".join(
                [
                    f"listening-ip={turn.host}",
                    f"relay-ip={turn.host}",
                    f"listening-port={port}",
                    f"min-port={relay.start}",
                    f"max-port={relay.stop - 1}",
                    "use-auth-secret",
                    f"static-auth-secret={secret.decode()}",
                    f"realm={REALM}",
                    "fingerprint",
                    "no-tls",
                    "no-dtls",
                    "allow-loopback-peers",
                    "no-cli",
                    "no-rfc5780",
                    "simple-log",
                    f"log-file={turn.log}",
                    f"pidfile={folder / 'turnserver.pid'}",
                    f"userdb={folder / 'turndb'}",  # not the system's /var/lib/turn
                    "",
                ]
            )
        )
    process = subprocess.Popen(
        [TURNSERVER, "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _answers_stun(turn.address):
            if process.poll() is not None:
                pytest.fail(f"turnserver exited with {process.returncode}:\n{turn.logs()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"turnserver not answering after {timeout}s:\n{turn.logs()[-3000:]}")
            time.sleep(0.1)
        yield turn
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
