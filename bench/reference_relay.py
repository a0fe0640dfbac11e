"""A tiny MCP relay written straight on picows (+ uvloop): the speed reference.

One process, no router, rooms of two in a dict. It speaks the protocol subset the
bench uses (see the "Protocol" section of README.md): join with ``?room=``, ``joined`` /
``peer-joined`` / ``peer-left`` events, byte-for-byte relay of offer, answer,
candidate and leave to the other peer, ``info``/``no_peer`` when alone,
``error``/``room_full`` then close 4409 for a third peer, ``error`` for bad JSON or
an unknown type. Every message is parsed with ``json.loads`` (as a real server
has to, to validate it), so the ratio "our server / this relay" compares like
with like: what is left is the cost of the server's architecture.

Run: ``python -m bench.reference_relay --port 8799``; with ``--certfile CERT --keyfile KEY``
it serves ``wss://`` (the TLS row of ``bench overheads``: the reference doing the same work).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
from urllib.parse import parse_qs, urlsplit

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from bench.wsclient import new_event_loop, raise_nofile_limit

RELAYED = frozenset({"offer", "answer", "candidate", "leave"})
NO_PEER = (
    b'{"type":"info","code":"no_peer","message":"No other peer in the room; message not delivered"}'
)
ROOM_FULL = b'{"type":"error","code":"room_full","message":"Room is full"}'
TEXT = WSMsgType.TEXT


class Relay:
    def __init__(self) -> None:
        self.rooms: dict[str, list[RelayPeer]] = {}

    def factory(self, request: WSUpgradeRequest) -> WSListener | None:
        parts = urlsplit(request.path.decode("latin-1"))
        if parts.path.rstrip("/") != "/ws/signal":
            return None
        room = (parse_qs(parts.query).get("room") or ["default"])[0] or "default"
        return RelayPeer(self, room)


class RelayPeer(WSListener):
    def __init__(self, relay: Relay, room: str) -> None:
        super().__init__()
        self.relay = relay
        self.room = room
        self.transport: WSTransport | None = None
        self.other: RelayPeer | None = None
        self.member = False

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.send(TEXT, data)

    def event(self, **fields: object) -> None:
        self.send(json.dumps(fields, separators=(",", ":")).encode())

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        peers = self.relay.rooms.setdefault(self.room, [])
        if len(peers) >= 2:
            self.send(ROOM_FULL)
            transport.send_close(4409)  # type: ignore[arg-type]  # any int close code works
            transport.disconnect()
            return
        self.member = True
        peers.append(self)
        if len(peers) == 2:
            other = peers[0]
            self.other, other.other = other, self
            self.event(type="joined", room=self.room, peers=2, initiator=True)
            other.event(type="peer-joined", room=self.room, peers=2)
        else:
            self.event(type="joined", room=self.room, peers=1, initiator=False)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == TEXT:
            data = frame.get_payload_as_bytes()
            try:
                msg = json.loads(data)
            except ValueError:
                self.send(b'{"type":"error","code":"invalid_json","message":"Invalid JSON"}')
                return
            if not isinstance(msg, dict) or msg.get("type") not in RELAYED:
                self.send(b'{"type":"error","code":"unknown_type","message":"Unknown type"}')
                return
            other = self.other
            if other is None or other.transport is None:
                self.send(NO_PEER)
            else:
                other.transport.send(TEXT, data)
        elif msg_type == WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.transport = None
        if not self.member:
            return
        self.member = False
        peers = self.relay.rooms.get(self.room)
        if peers is not None:
            with contextlib.suppress(ValueError):
                peers.remove(self)
            if not peers:
                del self.relay.rooms[self.room]
        other = self.other
        self.other = None
        if other is not None:
            other.other = None
            other.send(b'{"type":"leave"}')
            other.event(type="peer-left", room=self.room, peers=1)


async def serve(
    host: str, port: int, ready: asyncio.Event | None = None, tls: ssl.SSLContext | None = None
) -> None:
    relay = Relay()
    server = await ws_create_server(relay.factory, host, port, backlog=4096, ssl=tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--certfile", help="PEM certificate chain: serve wss:// (with --keyfile)")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")
    args = parser.parse_args(argv)
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    tls = None
    if args.certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            parser.error(f"--certfile/--keyfile: {exc}")
    raise_nofile_limit()
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve(args.host, args.port, tls=tls))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
