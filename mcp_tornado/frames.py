"""WebSocket framing on the hot path: read every frame a recv brought, write frames in bulk.

Tornado implements RFC 6455 well but spends its time per frame: its reader
awaits the stream three or four times per frame (header, length, mask,
payload) and its ``write_message`` creates a Task and issues a ``send()`` per
frame.  This module keeps Tornado's handshake, handler API, close and
ping/pong handling, and replaces only those two inner loops:

* :class:`BulkReadProtocol` reads whatever the socket has in one await and
  parses all complete frames from it, with Tornado's own validation rules
  (reserved bits, control-frame limits, fragmentation, ``max_message_size``)
  and hands each message to Tornado's ``_handle_message``.
* :func:`text_frame_header` builds the header of a server text frame, so a
  handler can queue ``header + payload`` pairs and write them with one call.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any, Final

from tornado.iostream import StreamClosedError
from tornado.speedups import websocket_mask
from tornado.websocket import WebSocketProtocol13

log = logging.getLogger("mcp_tornado.worker")

_SHORT_HEADERS: Final = [bytes((0x81, n)) for n in range(126)]
_pack_header16 = struct.Struct("!BBH").pack
_pack_header64 = struct.Struct("!BBQ").pack
_unpack16 = struct.Struct("!H").unpack_from
_unpack64 = struct.Struct("!Q").unpack_from

_READ_SIZE: Final = 64 * 1024
_YIELD_AFTER: Final = 256 * 1024  # bytes parsed before letting other connections run


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame carrying ``length`` bytes (RFC 6455 5.2)."""
    if length < 126:
        return _SHORT_HEADERS[length]
    if length < 0x10000:
        return _pack_header16(0x81, 126, length)
    return _pack_header64(0x81, 127, length)


class BulkReadProtocol(WebSocketProtocol13):
    """Tornado's server-side RFC 6455 protocol with a reader that parses frames in bulk.

    Use it from a ``WebSocketHandler`` by overriding ``get_websocket_protocol``.
    """

    def __init__(
        self, *args: Any, on_close_frame: Callable[[], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_close_frame = on_close_frame  # runs before the close is echoed
        self._fragments: bytearray | None = None  # a fragmented message being reassembled
        self._fragments_opcode = 0
        self._reader: asyncio.Future[None] | None = None  # the task running _read_loop

    async def _receive_frame_loop(self) -> None:
        # Read in a task of its own and return at once: the handshake's chain of
        # coroutines (the handler's get(), Tornado's accept) then finishes and is
        # freed instead of staying suspended, with its locals, for the whole life
        # of every connection, about 1.5 KB each.
        self._reader = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        pending = b""  # bytes of a frame that has not fully arrived yet
        work = 0
        try:
            while not self.client_terminated:
                chunk = await self.stream.read_bytes(_READ_SIZE, partial=True)
                self._wire_bytes_in += len(chunk)
                data = pending + chunk if pending else chunk
                used = self._parse_frames(data)
                if used < 0:  # protocol violation: already aborted or closing
                    return
                pending = data[used:]
                work += len(chunk)
                if work >= _YIELD_AFTER:
                    work = 0
                    await asyncio.sleep(0)
        except StreamClosedError:
            self._abort()
        except Exception:
            log.exception("websocket: reader failed; closing the connection")
            self._abort()
        finally:
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    def _parse_frames(self, data: bytes) -> int:
        """Handle every complete frame in ``data``; return the bytes used, or -1 to stop."""
        pos = 0
        end = len(data)
        max_size = self.params.max_message_size
        while end - pos >= 2:
            header = data[pos]
            second = data[pos + 1]
            fin = header & 0x80
            opcode = header & 0x0F
            if header & 0x70:  # reserved bits: no extension is negotiated
                self._abort()
                return -1
            length = second & 0x7F
            at = pos + 2
            if opcode & 0x8 and (length >= 126 or not fin):
                self._abort()  # control frames are short and never fragmented
                return -1
            if length == 126:
                if end - at < 2:
                    break
                length = _unpack16(data, at)[0]
                at += 2
            elif length == 127:
                if end - at < 8:
                    break
                length = _unpack64(data, at)[0]
                at += 8
            buffered = self._fragments
            if length + (len(buffered) if buffered is not None else 0) > max_size:
                self.close(1009, "message too big")
                self._abort()
                return -1
            if not second & 0x80:  # clients must mask every frame
                self._abort()
                return -1
            if end - at < 4 + length:
                break
            payload = websocket_mask(data[at : at + 4], data[at + 4 : at + 4 + length])
            pos = at + 4 + length
            if not self._on_frame(fin, opcode, payload):
                return -1
            if self.client_terminated:
                return -1
        return pos

    def _on_frame(self, fin: int, opcode: int, payload: bytes) -> bool:
        """Reassemble fragments as Tornado does; ``False`` on a protocol violation."""
        if opcode == 0:  # continuation
            buffered = self._fragments
            if buffered is None:
                self._abort()
                return False
            buffered.extend(payload)
            if not fin:
                return True
            opcode = self._fragments_opcode
            payload = bytes(buffered)
            self._fragments = None
        elif not opcode & 0x8:  # first frame of a data message
            if self._fragments is not None:
                self._abort()
                return False
            if not fin:
                self._fragments_opcode = opcode
                self._fragments = bytearray(payload)
                return True
        if opcode == 0x8 and self._on_close_frame is not None and not self.client_terminated:
            self._on_close_frame()
        # Our handlers' on_message is synchronous, so nothing here is awaited.
        self._handle_message(opcode, payload)
        return True
