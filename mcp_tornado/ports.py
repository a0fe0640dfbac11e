"""Who may serve a port: the workers of one deployment share it; anyone else is refused.

Usage (a worker, before it listens)::

    claim = ports.claim(host, port, router_endpoint)  # raises CannotStart if taken
    sockets = ports.bind(host, port)                   # bound, not listening yet
    ...
    claim.release()                                    # or just exit

``SO_REUSEPORT`` lets every process of the same user bind a port that is
already bound, so a second deployment (another router, another room table)
started on the same port would silently get half of the connections.  A
*deployment* is identified by its router endpoint: workers that talk to the
same router may share a port, workers of different routers may not (a
multi-host deployment shares a router, never a port).

Each worker claims the port for its deployment before it binds it: for every
address it is going to listen on it binds an abstract unix socket named::

    mcp-tornado/port/PORT/ADDRESS/DEPLOYMENT/PID-N

(DEPLOYMENT: a hash of the router endpoint).  The abstract namespace belongs to
the network namespace, exactly like the TCP port, so every process that could
share the port sees the claims, whatever its user, environment or private
``/tmp``; and a claim vanishes with its process, so nothing goes stale.  Under a
guard (another abstract socket, held only for the check) the worker lists the
claims of the port (``/proc/net/unix``) and refuses to start when a claim of
another deployment overlaps its addresses (the same address, or a wildcard).
A claim socket listens: it answers whoever connects with its router endpoint,
so that the refusal can say which deployment holds the port.

The first worker of a deployment on a port also checks ``/proc/net/tcp*`` for a
listener that is not mcp-tornado's (a program that set ``SO_REUSEPORT`` too),
and :func:`bind` turns ``EADDRINUSE`` and friends into one line naming the
port and, when this user may see it, the program that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

__all__ = ["CannotStart", "PortClaim", "addresses", "bind", "check", "claim"]

_PREFIX: Final = "mcp-tornado/port/"
_WILDCARDS: Final = frozenset({"0.0.0.0", "::"})
_GUARD_TIMEOUT: Final = 5.0  # seconds to wait for another process's check to finish
_ASK_TIMEOUT: Final = 0.5  # seconds a claim holder has to say its router endpoint
_numbers = itertools.count()


class CannotStart(Exception):
    """A start-up failure that a restart cannot fix; ``str()`` is the one line to print."""


class _Claim(NamedTuple):
    address: str
    deployment: str
    pid: int
    name: str  # the abstract name, without the leading NUL


def deployment_of(endpoint: str) -> str:
    """The deployment id of workers connected to the router at ``endpoint``."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:16]


def addresses(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to for listening, as :func:`bind` will bind them."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise CannotStart(f"cannot listen on {host!r}: {exc.strerror}") from None
    found: list[str] = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in found:
            found.append(str(sockaddr[0]))
    return found


def _overlap(a: str, b: str) -> bool:
    return a == b or a in _WILDCARDS or b in _WILDCARDS


def _where(host: str, port: int) -> str:
    return f"port {port} on {host or '0.0.0.0'}"


def _claims(port: int) -> list[_Claim]:
    """The live claims of ``port`` (any deployment), from ``/proc/net/unix``."""
    wanted = f"@{_PREFIX}{port}/"
    found: dict[str, _Claim] = {}
    with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
        next(table, None)
        for line in table:
            fields = line.split()
            if len(fields) < 8 or not fields[7].startswith(wanted):
                continue
            parts = fields[7][len(wanted) :].split("/")
            pid = parts[-1].partition("-")[0]
            if len(parts) != 3 or not pid.isdigit():
                continue  # the guard, or not ours
            name = fields[7][1:]
            found[name] = _Claim(parts[0], parts[1], int(pid), name)
    return list(found.values())


@contextlib.contextmanager
def _guard(port: int) -> Iterator[None]:
    """Held while a process checks the claims of ``port`` and adds its own."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + _GUARD_TIMEOUT
    try:
        while True:
            try:
                sock.bind(f"\0{_PREFIX}{port}/guard")
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise CannotStart(
                        f"cannot check who serves port {port}: {exc.strerror}"
                    ) from None
                time.sleep(0.005)
        yield
    finally:
        sock.close()


def _ask(name: str) -> str | None:
    """The router endpoint a claim's holder answers with, if it answers in time."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(_ASK_TIMEOUT)
        try:
            sock.connect("\0" + name)
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        except OSError:
            return None
    return b"".join(chunks).decode(errors="replace") or None


def _foreign_listener(port: int, mine: list[str]) -> str | None:
    """A TCP listener on ``port`` overlapping ``mine`` (described), from ``/proc/net/tcp*``."""
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for address, inode in _listeners(table, family, port):
            if any(_overlap(address, m) for m in mine):
                return _holder(inode)
    return None


def _listeners(table: str, family: int, port: int) -> Iterator[tuple[str, str]]:
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # LISTEN
            continue
        hex_address, hex_port = fields[1].split(":")
        if int(hex_port, 16) != port:
            continue
        raw = bytes.fromhex(hex_address)
        # The kernel prints each 32-bit word in host order.
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        yield socket.inet_ntop(family, raw), fields[9]


def _holder(inode: str) -> str:
    """``"by NAME (pid N)"`` for the process owning socket ``inode``, when this user may see it."""
    target = f"socket:[{inode}]"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        command = (proc / "cmdline").read_bytes().decode(errors="replace")
                        words = command.replace("\0", " ").split()
                        if words:  # /usr/bin/python3 -m x: python3 -m x
                            words[0] = os.path.basename(words[0])
                        shown = " ".join(words)[:80]
                        return f"by {shown or 'another program'} (pid {proc.name})"
    return "by another program"


class PortClaim:
    """This process's claim of a port for its deployment; released on :meth:`release` or exit."""

    def __init__(self, endpoint: str, sockets: list[socket.socket]) -> None:
        self.endpoint = endpoint
        self._sockets = sockets
        self._loop: asyncio.AbstractEventLoop | None = None

    def answer_in(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer, in ``loop``, whoever asks which deployment holds the port."""
        self._loop = loop
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._answer, sock)

    def _answer(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn, _ = sock.accept()
            with conn:
                conn.settimeout(0.1)
                conn.sendall(self.endpoint.encode())

    def release(self) -> None:
        for sock in self._sockets:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []


def claim(host: str, port: int, endpoint: str) -> PortClaim:
    """Claim ``host:port`` for the deployment of the router at ``endpoint``.

    Raises :class:`CannotStart` when another deployment's workers serve an
    overlapping address of that port, or (for the first worker of a deployment)
    when another program listens there with ``SO_REUSEPORT``.  Port 0 (a port of
    the kernel's choosing, a different one per worker) is never shared: no claim.
    """
    if port == 0:
        return PortClaim(endpoint, [])
    mine = addresses(host, port)
    deployment = deployment_of(endpoint)
    sockets: list[socket.socket] = []
    try:
        with _guard(port):
            _refuse_others(host, port, mine, deployment)
            for address in mine:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sockets.append(sock)
                number = next(_numbers)  # one process may claim a port twice (tests)
                sock.bind(f"\0{_PREFIX}{port}/{address}/{deployment}/{os.getpid()}-{number}")
                sock.listen(8)
                sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return PortClaim(endpoint, sockets)


def _refuse_others(host: str, port: int, mine: list[str], deployment: str | None) -> None:
    """Raise :class:`CannotStart` if anyone but ``deployment`` serves ``mine`` on ``port``."""
    claims = _claims(port)
    for other in claims:
        if other.deployment != deployment and any(_overlap(other.address, m) for m in mine):
            router = _ask(other.name)
            held = f"router {router}, " if router else ""
            raise CannotStart(
                f"{_where(host, port)} is already served by another mcp-tornado "
                f"deployment ({held}worker pid {other.pid})"
            )
    if not any(c.deployment == deployment for c in claims):
        holder = _foreign_listener(port, mine)
        if holder is not None:
            raise CannotStart(f"{_where(host, port)} is already in use {holder}")


def bind(host: str, port: int, backlog: int | None = None) -> list[socket.socket]:
    """Bind ``host:port`` with ``SO_REUSEPORT`` (every address it resolves to), non-blocking.

    The sockets listen only when ``backlog`` is given: bound but not listening,
    they hold the port without being handed connections.  A port that cannot be
    bound raises :class:`CannotStart` with one line saying why.
    """
    sockets: list[socket.socket] = []
    try:
        for address in addresses(host, port):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)
            try:
                sock.bind((address, port or _first_port(sockets)))
            except OSError as exc:
                raise CannotStart(_bind_failure(host, port, exc)) from None
            if backlog is not None:
                sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _first_port(sockets: list[socket.socket]) -> int:
    """With port 0, every address after the first takes the first one's port (as Tornado does)."""
    if len(sockets) > 1:
        port: int = sockets[0].getsockname()[1]
        return port
    return 0


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    where = _where(host, port)
    if exc.errno == errno.EADDRINUSE:
        holder = _foreign_listener(port, addresses(host, port))
        return f"{where} is already in use {holder or 'by another program'}"
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: no such address on this machine"
    return f"{where}: {exc.strerror}"


def check(host: str, port: int) -> None:
    """Raise :class:`CannotStart` if a new deployment could not serve ``host:port``.

    ``serve`` calls it before it starts anything, so that a taken port stops it
    at once with one line; each worker still claims the port itself.  A
    deployment about to start has no workers yet: any claim of the port is
    another deployment's, even one that names the same router endpoint.  It
    only looks (it claims nothing), so it never stands in anyone's way.
    """
    if port == 0:
        return
    with _guard(port):
        _refuse_others(host, port, addresses(host, port), None)
    for sock in bind(host, port):
        sock.close()
