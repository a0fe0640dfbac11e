"""A WebSocket echo built on the worker's real classes, for conformance tests (Autobahn).

Usage::

    python -m tests.echo --port 9001   # ws://127.0.0.1:9001/ws/signal/ echoes every message

It serves :class:`~mcp_tornado.connection.Connection` and
:class:`~mcp_tornado.websocket.ServerProtocol` exactly as a worker does (the
same handshake, framing, closing handshake and write batching), with an
:class:`EchoHandler` in the place of the signaling peer: text and binary
messages come back as they were sent, pings get their pong.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop

from mcp_tornado import handshake
from mcp_tornado.connection import Connection, WriteScheduler

MAX_MESSAGE_SIZE = 16 * 2**20  # Autobahn's section 9 sends messages of up to 16 MiB


class EchoHandler:
    """Sends every message back as it came."""

    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def opened(self, request: handshake.Upgrade) -> None:
        self.connection.complete_upgrade()

    def message_received(self, data: bytes, text: bool) -> None:
        if text:
            self.connection.send_text(data)
        else:
            self.connection.send_binary(data)

    def ping_received(self, data: bytes) -> None:
        self.connection.pong(data)

    def frames_received(self, count: int) -> None:
        pass

    def close_received(self) -> None:
        self.connection.close()  # echo the client's code

    def stalled(self) -> None:
        pass

    def connection_lost(self) -> None:
        pass


class EchoEndpoint:
    """Accepts every upgrade with an :class:`EchoHandler`."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.writes = WriteScheduler()
        self.max_message_size = max_message_size
        self.max_backlog = 0
        # Autobahn 9.3.x/9.4.x send 4 MiB in fragments of 64 bytes: 65,536 of them.
        self.max_fragments: int | None = None
        self.open = 0

    def accept(self, connection: Connection, request: handshake.Upgrade) -> EchoHandler:
        self.open += 1
        return EchoHandler(connection)

    def released(self, connection: Connection) -> None:
        self.open -= 1


async def serve(host: str, port: int, max_message_size: int) -> None:
    endpoint = EchoEndpoint(max_message_size)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(endpoint, None), host, port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"echo listening on {host}:{port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-message-size", type=int, default=MAX_MESSAGE_SIZE)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.host, args.port, args.max_message_size))


if __name__ == "__main__":
    main()
