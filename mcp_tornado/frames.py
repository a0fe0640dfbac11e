"""RFC 6455 framing for the server side: parse client frames in bulk, build server frames.

:class:`FrameReader` takes whatever bytes a read brought and hands every
complete message to a callback, keeping the tail of a frame that has not
fully arrived.  It applies the rules a server must: client frames are masked,
no extension is negotiated (reserved bits are zero), control frames are
short and never fragmented, fragments reassemble in order, and a message
over ``max_message_size`` is refused from its header, before its payload is
read.

The builders (:func:`text_frame_header`, :func:`close_frame`,
:func:`control_frame`) make unmasked server frames, so a connection can queue
``header + payload`` pairs and write them with one call.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from tornado.speedups import websocket_mask

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

# What feed() reports when the client broke the protocol (RFC 6455 7.4.1 close codes).
PROTOCOL_ERROR: Final = 1002
MESSAGE_TOO_BIG: Final = 1009

_SHORT_HEADERS: Final = [bytes((0x81, n)) for n in range(126)]
_pack_header16 = struct.Struct("!BBH").pack
_pack_header64 = struct.Struct("!BBQ").pack
_unpack16 = struct.Struct("!H").unpack_from
_unpack64 = struct.Struct("!Q").unpack_from


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame carrying ``length`` bytes (RFC 6455 5.2)."""
    if length < 126:
        return _SHORT_HEADERS[length]
    if length < 0x10000:
        return _pack_header16(0x81, 126, length)
    return _pack_header64(0x81, 127, length)


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """An unmasked control frame (close, ping, pong); ``payload`` is cut to 125 bytes."""
    payload = payload[:125]
    return bytes((0x80 | opcode, len(payload))) + payload


def close_frame(code: int | None, reason: str | None = None) -> bytes:
    """A close frame with ``code`` and ``reason`` (the reason cut to fit 125 bytes)."""
    if code is None:
        return control_frame(CLOSE)
    body = struct.pack("!H", code) + (reason or "").encode()[:123]
    return control_frame(CLOSE, body)


class FrameReader:
    """Parses a client's byte stream into messages.

    ``on_message(opcode, payload)`` receives each whole data message
    (:data:`TEXT` or :data:`BINARY`, fragments already joined) and each
    control frame (:data:`CLOSE`, :data:`PING`, :data:`PONG`), unmasked.  It
    returns ``False`` to stop reading (the connection is closing).
    """

    __slots__ = ("_fragments", "_fragments_opcode", "_on_message", "_pending", "max_message_size")

    def __init__(self, max_message_size: int, on_message: Callable[[int, bytes], bool]) -> None:
        self.max_message_size = max_message_size
        self._on_message = on_message
        self._pending = b""  # bytes of a frame that has not fully arrived yet
        self._fragments: bytearray | None = None  # a fragmented message being reassembled
        self._fragments_opcode = 0

    def feed(self, chunk: bytes) -> int:
        """Handle every complete frame so far; 0, or the close code of a protocol violation.

        After a violation (or once ``on_message`` said stop) the reader is done:
        the caller closes the connection and feeds it nothing more.
        """
        data = self._pending + chunk if self._pending else chunk
        pos = 0
        end = len(data)
        max_size = self.max_message_size
        while end - pos >= 2:
            header = data[pos]
            second = data[pos + 1]
            fin = header & 0x80
            opcode = header & 0x0F
            if header & 0x70:  # reserved bits: no extension is negotiated
                return PROTOCOL_ERROR
            length = second & 0x7F
            at = pos + 2
            if opcode & 0x8 and (length >= 126 or not fin):
                return PROTOCOL_ERROR  # control frames are short and never fragmented
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
                return MESSAGE_TOO_BIG
            if not second & 0x80:  # clients must mask every frame
                return PROTOCOL_ERROR
            if end - at < 4 + length:
                break
            payload = websocket_mask(data[at : at + 4], data[at + 4 : at + 4 + length])
            pos = at + 4 + length
            verdict = self._frame(fin, opcode, payload)
            if verdict:
                return verdict
            if verdict is None:
                self._pending = b""
                return 0
        self._pending = data[pos:]
        return 0

    def _frame(self, fin: int, opcode: int, payload: bytes) -> int | None:
        """Reassemble fragments; 0 to go on, ``None`` to stop, else a violation's close code."""
        if opcode == CONTINUATION:
            buffered = self._fragments
            if buffered is None:
                return PROTOCOL_ERROR
            buffered.extend(payload)
            if not fin:
                return 0
            opcode = self._fragments_opcode
            payload = bytes(buffered)
            self._fragments = None
        elif opcode in (TEXT, BINARY):
            if self._fragments is not None:
                return PROTOCOL_ERROR  # a new message before the last one ended
            if not fin:
                self._fragments_opcode = opcode
                self._fragments = bytearray(payload)
                return 0
        elif opcode not in (CLOSE, PING, PONG):
            return PROTOCOL_ERROR  # reserved opcode
        return 0 if self._on_message(opcode, payload) else None
