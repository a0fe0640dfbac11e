"""A WebSocket echo server for the Autobahn TestSuite, on the project's own WebSocket code.

Usage: ``python -m tests.autobahn.echo_server --port N`` (serves ``ws://127.0.0.1:N/ws/signal/``).

It echoes text and binary messages, answers pings and echoes the client's close,
with the handshake of :mod:`mcp_tornado.handshake` and the framing of
:mod:`mcp_tornado.frames`, applying the same rules as the worker's
``SignalConnection`` (a protocol violation or invalid UTF-8 drops the connection,
a message over the limit gets close 1009), so that its Autobahn results are
those of the signaling endpoint's WebSocket layer.  Kept tiny on purpose: when
the WebSocket layer is rewritten, only this file changes.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
from typing import cast

import uvloop

from mcp_tornado import frames, handshake


class EchoConnection(asyncio.Protocol):
    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self.transport = cast(asyncio.Transport, None)
        self.head = b""
        self.reader: frames.FrameReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.reader is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            request = handshake.parse_upgrade(self.head[: end + 4])
            if isinstance(request, handshake.Rejection):
                self.transport.write(handshake.rejection_response(request))
                self.transport.close()
                return
            self.transport.write(handshake.accept_response(request.key))
            self.reader = frames.FrameReader(self.max_message_size, self.on_frame)
            data = self.head[end + 4 :]
        verdict = self.reader.feed(data)
        if verdict == frames.MESSAGE_TOO_BIG:
            self.transport.write(frames.close_frame(verdict, "message too big"))
        if verdict:
            self.transport.abort()

    def on_frame(self, opcode: int, payload: bytes) -> bool:
        if opcode == frames.TEXT:
            try:
                payload.decode()
            except UnicodeDecodeError:
                self.transport.abort()
                return False
            self.transport.write(frames.text_frame_header(len(payload)) + payload)
        elif opcode == frames.BINARY:  # the text header with the binary opcode
            self.transport.write(b"\x82" + frames.text_frame_header(len(payload))[1:] + payload)
        elif opcode == frames.PING:
            self.transport.write(frames.control_frame(frames.PONG, payload))
        elif opcode == frames.CLOSE:
            code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else None
            self.transport.write(frames.close_frame(code))
            self.transport.close()
            return False
        return True


async def serve(host: str, port: int, max_message_size: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EchoConnection(max_message_size), host, port)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-message-size", type=int, default=64 * 2**20)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.max_message_size))


if __name__ == "__main__":
    main()
