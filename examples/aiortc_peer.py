#!/usr/bin/env python3
"""A reusable Python chat peer for mcp-tornado, built on aiortc.

It joins a room through the signaling server and opens (or accepts) the
DataChannel named ``chat``, exactly like the browser client, so bots written
in Python can talk to people in the browser.

Run an echo bot, with the server running (``./serve.sh``, port 8000) and from the
repository's root, in the environment ``./test.sh`` sets up (it has aiortc and
websockets; after ``./serve.sh`` alone: ``.venv/bin/pip install aiortc websockets``)::

    .venv/bin/python examples/aiortc_peer.py 'ws://127.0.0.1:8000/ws/signal/?room=lobby' --echo

then open http://127.0.0.1:8000/?room=lobby in a browser and chat with it.

Protocol notes (see the "Protocol" section of README.md):

* The server says ``joined`` with ``initiator``; the initiator (the peer that
  joined second) makes the offer, the other side answers. ``peer-joined`` means
  a newcomer will send a fresh offer; ``leave``/``peer-left`` mean the peer is gone.
* A server configured with STUN/TURN servers puts them in ``joined`` as
  ``iceServers`` (TURN ones with a time-limited username and credential); the
  peer connections use those, and the bot's own ``--stun`` servers only when the
  server sends none (:func:`parse_ice_servers`).
* aiortc does not trickle: its candidates are inside the SDP it sends once ICE
  gathering is complete. Browsers trickle theirs as
  ``{"type":"candidate","candidate":{"candidate":...,"sdpMid":...,"sdpMLineIndex":...}}``,
  which we parse with :func:`aiortc.sdp.candidate_from_sdp`. Candidates that
  arrive before the remote description are queued (up to
  ``MAX_PENDING_CANDIDATES``).
* The server checks the shape of what it relays, not its meaning: the other
  peer can send any JSON that passes (extra fields of any type, 5,000-digit
  numbers, deep nesting, a broken SDP or candidate). A message the bot cannot
  use is logged and skipped (:func:`decode_message`, :meth:`AiortcPeer.on_frame`);
  it never stops the bot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcicetransport import parse_stun_turn_uri
from aiortc.sdp import candidate_from_sdp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("aiortc_peer")

CHANNEL_LABEL = "chat"
CLOSE_ROOM_FULL = 4409
MAX_PENDING_CANDIDATES = 64  # candidates kept while no remote description is set
MAX_EVENTS = 256  # message types remembered in AiortcPeer.events
MAX_LOGGED = 200  # characters of peer-controlled text put in a log line
MAX_ICE_SERVERS = 16  # entries (and URLs per entry) taken from a joined event

MessageHandler = Callable[["AiortcPeer", str], Awaitable[None] | None]


class RoomFullError(RuntimeError):
    """The server refused to join: the room already has two peers."""


def decode_message(raw: str | bytes) -> dict[str, Any] | None:
    """A signaling frame as a JSON object with a string ``type``; ``None`` for anything else.

    Never raises: ``json.loads`` fails with ``JSONDecodeError`` on bad JSON, but
    also with a plain ``ValueError`` on an integer over Python's digit limit
    (4,300 digits) and ``RecursionError`` on very deep nesting, all of which
    the server relays from the other peer.
    """
    if not isinstance(raw, str):
        return None
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None
    if isinstance(msg, dict) and isinstance(msg.get("type"), str):
        return msg
    return None


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_LOGGED else text[:MAX_LOGGED] + "..."


def parse_candidate(payload: Any) -> RTCIceCandidate | None:
    """Turn a signaled browser candidate into an aiortc RTCIceCandidate.

    Accepts the nested ``{"candidate": {...}}`` shape and the flat legacy one.
    Returns None for end-of-candidates markers and unparseable input.
    """
    if isinstance(payload, dict) and isinstance(payload.get("candidate"), dict):
        inner = payload["candidate"]
    elif isinstance(payload, dict):
        inner = payload
    else:
        return None
    line = inner.get("candidate")
    if not isinstance(line, str) or not line.strip():
        return None
    line = line.strip()
    if line.startswith("a="):
        line = line[2:]
    if line.startswith("candidate:"):
        line = line[len("candidate:") :]
    try:
        candidate = candidate_from_sdp(line)
    except Exception:  # any of aiortc's parse errors, on any line a peer sends
        log.warning("ignoring unparseable candidate %s", _shown(line))
        return None
    mid = inner.get("sdpMid")
    index = inner.get("sdpMLineIndex")
    candidate.sdpMid = mid if isinstance(mid, str) else None
    valid_index = isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 1024
    candidate.sdpMLineIndex = index if valid_index else None
    if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
        candidate.sdpMLineIndex = 0
    return candidate


def _usable_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parse_stun_turn_uri(url)
    except ValueError:
        return False
    return True


def parse_ice_servers(value: Any) -> list[RTCIceServer]:
    """The ``iceServers`` of a ``joined`` event as aiortc servers (``[]``: none usable).

    ``[{"urls": [...]}, {"urls": [...], "username": "...", "credential": "..."}]``,
    as browsers take it; entries and URLs aiortc cannot use are skipped.
    """
    servers: list[RTCIceServer] = []
    if not isinstance(value, list):
        return servers
    for entry in value[:MAX_ICE_SERVERS]:
        if not isinstance(entry, dict):
            continue
        urls = entry.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        username, credential = entry.get("username"), entry.get("credential")
        if not isinstance(urls, list) or not all(
            item is None or isinstance(item, str) for item in (username, credential)
        ):
            continue
        usable = [url for url in urls[:MAX_ICE_SERVERS] if _usable_url(url)]
        if usable:
            servers.append(RTCIceServer(urls=usable, username=username, credential=credential))
    return servers


def extract_sdp(msg: dict[str, Any], kind: str) -> str | None:
    """SDP from ``{"type":kind,"sdp":"..."}`` or ``{"type":kind,kind:{type,sdp}}``."""
    for value in (msg.get(kind), msg.get("description"), msg.get("sdp")):
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict) and isinstance(value.get("sdp"), str):
            sdp: str = value["sdp"]
            return sdp
    return None


class AiortcPeer:
    """One chat peer: a signaling WebSocket plus (at most) one RTCPeerConnection.

    Use :meth:`run` as a task; await :meth:`wait_connected`, then :meth:`send`.
    Messages from the other side are put on :attr:`received` and passed to the
    optional ``on_message`` callback.  ``ice_servers`` are used when the server's
    ``joined`` brings none.
    """

    def __init__(
        self,
        url: str,
        *,
        ice_servers: Sequence[RTCIceServer] = (),
        on_message: MessageHandler | None = None,
    ) -> None:
        self.url = url
        self.ice_servers = list(ice_servers)
        self.joined_ice_servers: list[RTCIceServer] = []  # from the latest joined event
        self.on_message = on_message
        self.received: asyncio.Queue[str] = asyncio.Queue()
        self.events: deque[str] = deque(maxlen=MAX_EVENTS)  # the latest message types
        self._connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._pending: list[RTCIceCandidate] = []
        self._room_full = False

    # -- public API ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float = 20.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def send(self, text: str) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            raise RuntimeError("chat channel is not open")
        channel.send(text)

    async def run(self) -> None:
        """Connect, join the room and handle signaling until the socket closes."""
        async with connect(self.url) as ws:
            self._ws = ws
            try:
                async for raw in ws:
                    await self.on_frame(raw)
            except ConnectionClosed as exc:
                if self._room_full or (exc.rcvd is not None and exc.rcvd.code == CLOSE_ROOM_FULL):
                    raise RoomFullError("Room is full") from exc
                raise
            finally:
                self._ws = None
                await self._close_peer()
        if self._room_full or ws.close_code == CLOSE_ROOM_FULL:
            raise RoomFullError("Room is full")

    async def close(self) -> None:
        """Leave the room cleanly: tell the peer, close the connection and socket."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.send(json.dumps({"type": "leave"}))
        await self._close_peer()
        if ws is not None:
            await ws.close()

    # -- signaling ------------------------------------------------------------

    async def on_frame(self, raw: str | bytes) -> None:
        """Handle one frame from the server; anything it cannot use is skipped.

        Only a closed connection (``ConnectionClosed``) gets out: a message that
        makes aiortc fail (a broken SDP, a candidate for no media section...) is
        logged and the bot carries on with the next one.
        """
        msg = decode_message(raw)
        if msg is None:
            log.debug("ignoring a frame that is not a signaling message")
            return
        try:
            await self._handle(msg)
        except ConnectionClosed:
            raise
        except Exception as exc:
            log.warning("ignoring a %s message that failed: %s", _shown(msg["type"]), _shown(exc))

    async def _signal(self, msg: dict[str, Any]) -> None:
        if self._ws is not None:
            await self._ws.send(json.dumps(msg))

    async def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        self.events.append(kind[:64])
        if kind == "joined":
            self.joined_ice_servers = parse_ice_servers(msg.get("iceServers"))
            if msg.get("initiator") is True:
                await self._make_offer()
        elif kind == "peer-joined":
            await self._close_peer()  # the newcomer will send a fresh offer
        elif kind in ("leave", "peer-left"):
            await self._close_peer()
        elif kind == "offer":
            sdp = extract_sdp(msg, "offer")
            if sdp is not None:
                await self._answer(sdp)
        elif kind == "answer":
            sdp = extract_sdp(msg, "answer")
            pc = self._pc
            if sdp is not None and pc is not None and pc.signalingState == "have-local-offer":
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
                await self._flush_candidates()
        elif kind == "candidate":
            candidate = parse_candidate(msg)
            if candidate is None:
                return
            if self._pc is None or self._pc.remoteDescription is None:
                if len(self._pending) < MAX_PENDING_CANDIDATES:
                    self._pending.append(candidate)
            else:
                await self._pc.addIceCandidate(candidate)
        elif kind == "error":
            log.warning("server error: %s", _shown(msg.get("message")))
            if msg.get("code") == "room_full":
                self._room_full = True
                if self._ws is not None:
                    await self._ws.close()
        else:
            log.debug("ignoring %s", _shown(kind))

    def configuration(self) -> RTCConfiguration:
        """A new peer connection's: the server's ICE servers, else the bot's own."""
        return RTCConfiguration(iceServers=self.joined_ice_servers or self.ice_servers)

    def _new_peer(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self.configuration())
        self._pc = pc

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if pc is self._pc and channel.label == CHANNEL_LABEL:
                self._attach(channel)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer connection state: %s", pc.connectionState)

        return pc

    def _attach(self, channel: RTCDataChannel) -> None:
        self._channel = channel

        @channel.on("open")
        def on_open() -> None:
            if channel is self._channel:
                self._connected.set()

        @channel.on("close")
        def on_close() -> None:
            if channel is self._channel:
                self._connected.clear()

        @channel.on("message")
        async def on_message(message: str | bytes) -> None:
            if channel is not self._channel or not isinstance(message, str):
                return
            self.received.put_nowait(message)
            if self.on_message is not None:
                result = self.on_message(self, message)
                if result is not None:
                    await result

        if channel.readyState == "open":
            self._connected.set()

    async def _make_offer(self) -> None:
        await self._close_peer()
        pc = self._new_peer()
        self._attach(pc.createDataChannel(CHANNEL_LABEL, ordered=True))
        # aiortc gathers all candidates during setLocalDescription.
        await pc.setLocalDescription(await pc.createOffer())
        await self._signal({"type": "offer", "sdp": pc.localDescription.sdp})

    async def _answer(self, sdp: str) -> None:
        pending = self._pending
        await self._close_peer()
        self._pending = pending  # candidates may have raced ahead of the offer
        pc = self._new_peer()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self._flush_candidates()
        await pc.setLocalDescription(await pc.createAnswer())
        await self._signal({"type": "answer", "sdp": pc.localDescription.sdp})

    async def _flush_candidates(self) -> None:
        pc = self._pc
        queued, self._pending = self._pending, []
        if pc is None:
            return
        for candidate in queued:
            try:  # one bad candidate must not cost the others, nor the answer
                await pc.addIceCandidate(candidate)
            except Exception as exc:
                log.warning("ignoring a candidate aiortc refused: %s", _shown(exc))

    async def _close_peer(self) -> None:
        pc, self._pc = self._pc, None
        self._channel = None
        self._pending = []
        self._connected.clear()
        if pc is not None:
            await pc.close()


async def echo(peer: AiortcPeer, text: str) -> None:
    """Message handler that sends every message back."""
    await peer.send(f"echo: {text}")


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("url", help="signaling URL, e.g. ws://127.0.0.1:8000/ws/signal/?room=lobby")
    parser.add_argument("--echo", action="store_true", help="send every message back")
    parser.add_argument("--say", action="append", default=[], help="message to send on connect")
    parser.add_argument(
        "--stun",
        action="append",
        default=[],
        help="STUN URL (repeatable), used when the server's joined event brings no iceServers",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    peer = AiortcPeer(
        args.url,
        ice_servers=[RTCIceServer(urls=u) for u in args.stun],
        on_message=echo if args.echo else None,
    )
    runner = asyncio.create_task(peer.run())

    async def greet() -> None:
        while True:
            await peer.wait_connected(timeout=3600)
            print("connected", flush=True)
            for line in args.say:
                await peer.send(line)
            while peer.connected:
                await asyncio.sleep(0.2)
            print("peer left", flush=True)

    async def show() -> None:
        while True:
            print(f"peer: {await peer.received.get()}", flush=True)

    helpers = [asyncio.create_task(greet()), asyncio.create_task(show())]
    try:
        await runner
    except RoomFullError:
        print("room is full", flush=True)
        return 2
    finally:
        for task in helpers:
            task.cancel()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(asyncio.run(main()))
