"""timeit of the relay hot path of a paired peer, worker side and router side, in-process.

Run from a checkout's root: ``python -m bench.relay_timeit``; to compare two
checkouts, run this file with the other's interpreter and ``PYTHONPATH`` (it
imports only ``mcp_tornado``, whose interfaces it uses are the same before
and after resume)::

    cd ../before && PYTHONPATH=. .venv/bin/python ../new/bench/relay_timeit.py

Prints the best of 25 runs (thread CPU time, so other load on the machine counts
little), in nanoseconds per relayed message:

* worker: a masked candidate frame through ``Connection.data_received`` to a
  peer whose partner is on another worker, up to the router link's queue;
* router: ``Router.handle`` of a batch of 64 such relays from one worker, and
  the flush of the 64 deliveries to the other (the socket stubbed out).
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import timeit
from typing import Any

from mcp_tornado import wire
from mcp_tornado.admission import Gatekeeper
from mcp_tornado.connection import Connection
from mcp_tornado.hub import Hub
from mcp_tornado.peer import SignalEndpoint
from mcp_tornado.router.broker import Router
from mcp_tornado.settings import LimitSettings, RouterSettings

CANDIDATE = (
    b'{"type":"candidate","candidate":"candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host"}'
)
N = 20_000
BATCH = 64


def _frame(payload: bytes) -> bytes:
    """A masked text frame (zero mask: the payload as it is)."""
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + b"\0\0\0\0" + payload


def best(fn: Any, number: int) -> float:
    runs = timeit.repeat(fn, number=number, repeat=25, timer=time.thread_time)
    return min(runs) / number * 1e9


class _NullLink:
    """A router link that accepts everything and keeps nothing."""

    ready = True

    def join(self, *args: Any) -> None:
        pass

    def relay(self, peer_id: int, payload: bytes) -> bool:
        return True

    def leave(self, *args: Any) -> bool:
        return True

    def fence(self, *args: Any) -> None:
        pass


class _Transport(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


class _Socket:
    """The router's socket, stubbed: it sends with ``send`` (``send_multipart`` before)."""

    def send(self, frame: Any, flags: int = 0) -> None:
        pass

    def send_multipart(self, frames: Any, flags: int = 0) -> None:
        pass


async def worker_side() -> float:
    hub = Hub(Gatekeeper(LimitSettings(rate=0)))
    hub.attach(_NullLink())  # type: ignore[arg-type]
    endpoint = SignalEndpoint(hub, hub.gate, 65536)
    connection = Connection(endpoint, None)
    connection.connection_made(_Transport())
    connection.data_received(
        b"GET /ws/signal/?room=r HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    (peer_id,) = hub.peers
    hub.joined(peer_id, "r", 2, True, 0)  # paired, with a partner on another worker
    frame = _frame(CANDIDATE)
    return best(lambda: connection.data_received(frame), N)


def router_side() -> float:
    router = Router(RouterSettings(bind="inproc://relay-timeit"))
    now = time.monotonic()
    for name in (b"w1", b"w2"):
        router.handle(name, wire.encode_batch([wire.Hello([])]), now)
    router.handle(b"w1", wire.encode_batch([wire.Join(1, "r")]), now)
    router.handle(b"w2", wire.encode_batch([wire.Join(1, "r")]), now)
    sock = _Socket()
    router._flush(sock, now)  # type: ignore[arg-type]
    batch = wire.encode_batch([wire.Relay(1, CANDIDATE)] * BATCH)

    def one_batch() -> None:
        router.handle(b"w2", batch, now)
        router._flush(sock, now)  # type: ignore[arg-type]

    return best(one_batch, N // BATCH) / BATCH


def main() -> None:
    worker = asyncio.run(worker_side())
    router = router_side()
    print(f"{os.getcwd()}: worker {worker:.0f} ns/message, router {router:.0f} ns/message")


if __name__ == "__main__":
    main()
