"""``mcp-tornado status``: ask a router how the deployment is doing, print a table (or JSON).

Usage::

    endpoint = find_serve_endpoint(port=None)   # the router of the running `serve`
    status = query(endpoint, timeout=2.0)       # a wire.Status, or raises NoAnswer
    print(render(endpoint, status))

The question is one :class:`~mcp_tornado.wire.Query` on a fresh DEALER socket.
The router answers it without registering the asker as a worker: no room,
heartbeat or liveness bookkeeping is touched.  Without ``--router``, the
endpoint is found the way ``serve`` names it: ``router-PORT-PID.ipc`` in the
runtime directory (:func:`~mcp_tornado.settings.runtime_dir`), for a ``serve``
whose process still runs.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import zmq

from mcp_tornado import wire

_SERVE_IPC = re.compile(r"router-(\d+)-(\d+)\.ipc")


class NoAnswer(Exception):
    """The router did not answer (or not with a Status)."""


class ServeEndpoint(NamedTuple):
    """The router endpoint of a running ``serve``."""

    endpoint: str
    port: int
    pid: int


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve_endpoints(folder: Path, port: int | None = None) -> list[ServeEndpoint]:
    """The routers of running ``serve`` processes (on ``port``, if given), by port."""
    found = []
    for path in sorted(folder.glob("router-*-*.ipc")):
        match = _SERVE_IPC.fullmatch(path.name)
        if match is None:
            continue
        serve_port, pid = int(match[1]), int(match[2])
        if (port is None or serve_port == port) and _alive(pid):
            found.append(ServeEndpoint(f"ipc://{path}", serve_port, pid))
    return sorted(found, key=lambda e: (e.port, e.pid))


def query(endpoint: str, timeout: float = 2.0) -> wire.Status:
    """Ask the router at ``endpoint``; raises :class:`NoAnswer` after ``timeout`` seconds."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            raise NoAnswer(f"cannot reach a router at {endpoint}: {exc}") from None
        sock.send(wire.encode_batch([wire.Query()]))
        if not sock.poll(int(timeout * 1000), zmq.POLLIN):
            raise NoAnswer(f"the router at {endpoint} did not answer within {timeout:g} s")
        try:
            return wire.decode_status(sock.recv())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise NoAnswer(f"the router at {endpoint} answered something else: {exc}") from None
    finally:
        with contextlib.suppress(zmq.ZMQError):
            sock.close(linger=0)


def as_json(endpoint: str, status: wire.Status) -> dict[str, Any]:
    """``status`` as a plain dict (``--json``): named fields, not wire arrays."""
    return {"router": endpoint, **msgspec.structs.asdict(status), "workers": [
        msgspec.structs.asdict(w) for w in status.workers
    ]}  # fmt: skip


def duration(seconds: float) -> str:
    """``3d04h``, ``1h02m``, ``5m07s``, ``42s``."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


def render(endpoint: str, status: wire.Status) -> str:
    """The human-readable table."""
    lines = [
        f"router   {endpoint}  epoch {status.epoch}  up {duration(status.uptime)}  "
        f"restarts {status.generation}",
        f"rooms {status.rooms}  peers {status.peers}  messages/s {status.messages_per_s:.1f}  "
        f"(messages {status.messages} since the router started)",
        *([f"shards   {status.shard_map}"] if status.shard_map else []),
        "",
    ]
    header = ("host", "pid", "worker", "restarts", "peers", "connections", "uptime", "heartbeat")
    rows = [header] + [
        (
            w.host or w.name,
            str(w.pid or "-"),
            str(w.index) if w.index >= 0 else "-",
            str(w.generation),
            str(w.peers),
            str(w.connections),
            duration(w.uptime) if w.pid else "-",
            f"{w.heartbeat_age:.1f}s ago",
        )
        for w in status.workers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not status.workers:
        lines.append("(no worker registered)")
    return "\n".join(lines)
