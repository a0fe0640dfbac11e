"""timeit of the WebSocket hot path: one whole masked text frame per read.

Run from the repository root: ``python -m bench.hotpath_timeit``.  Prints the
best of 25 runs (thread CPU time, so other load on the machine counts little)
for the sans-I/O core alone and through ``Connection.data_received``.
"""

from __future__ import annotations

import asyncio
import time
import timeit

from mcp_tornado.connection import Connection, WriteScheduler
from mcp_tornado.websocket import ServerProtocol
from tests.echo import EchoEndpoint, EchoHandler
from tests.rawws import TEXT, encode_frame, upgrade_request
from tests.stubs import StubTransport

CANDIDATE = (
    b'{"type":"candidate","candidate":"candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host"}'
)
OFFER = b'{"type":"offer","sdp":"' + b"x" * 3000 + b'"}'
N = 50_000


def best(fn: object) -> float:
    """Nanoseconds per call, best of 25 runs of N calls."""
    runs = timeit.repeat(fn, number=N, repeat=25, timer=time.thread_time)  # type: ignore[arg-type]
    return min(runs) / N * 1e9


class _Quiet(EchoHandler):
    def message_received(self, data: bytes, text: bool) -> None:
        pass


async def main() -> None:
    ws = ServerProtocol()
    for name, frame in (
        ("core, 90 B", encode_frame(TEXT, CANDIDATE)),
        ("core, 3 KB", encode_frame(TEXT, OFFER)),
    ):

        def core(frame: bytes = frame) -> None:
            for _ in ws.receive_data(frame):
                pass

        print(f"{name}: {best(core):.0f} ns/read")
    endpoint = EchoEndpoint(64 * 1024)
    endpoint.writes = WriteScheduler()
    endpoint.accept = lambda connection, request: _Quiet(connection)  # type: ignore[method-assign]
    connection = Connection(endpoint, None)
    connection.connection_made(StubTransport())
    connection.data_received(upgrade_request(8000, "/ws/signal/"))
    frame = encode_frame(TEXT, CANDIDATE)
    per_read = best(lambda: connection.data_received(frame))
    print(f"Connection.data_received, 90 B: {per_read:.0f} ns/read")


if __name__ == "__main__":
    asyncio.run(main())
