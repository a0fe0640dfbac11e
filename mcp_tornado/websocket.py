"""A sans-I/O RFC 6455 WebSocket server protocol: bytes in, events and bytes out.

:class:`ServerProtocol` is the state of one WebSocket connection after the
opening handshake (see :mod:`mcp_tornado.handshake`).  It does no I/O, runs no
timers and answers nothing on its own: the I/O layer hands it what the socket
read, acts on the events it returns and writes what it queued::

    ws = ServerProtocol(max_message_size=64 * 1024)

    def data_received(data: bytes) -> None:           # asyncio.Protocol
        for event in ws.receive_data(data):
            if type(event) is TextMessage:
                ws.send_text(event.data)              # echo
            elif type(event) is Ping:
                ws.send_pong(event.data)              # after the rate limit
            elif type(event) is CloseReceived:
                ws.send_close()                       # echo the client's code
        transport.write(ws.data_to_send())
        if ws.state is State.CLOSED:
            transport.close()

It applies what RFC 6455 asks of a server that negotiates no extension:
client frames are masked, reserved bits are zero, opcodes are known, control
frames are short and whole, fragments arrive in order, text is UTF-8 (checked
as each part arrives, so a bad byte fails the connection at once), Close
frames carry a valid code and a UTF-8 reason.  A violation queues a Close
frame (1002, 1007 or 1009) and ends the connection: :class:`ConnectionFailed`.
A message over ``max_message_size`` is refused from its frame header, before
its payload is read, and so is one of more than ``max_fragments`` frames (1009).

What a client's frames cost is bounded too, so that the application can
charge every frame, not only messages: :attr:`ServerProtocol.silent_frames`
counts the frames no event stands for (each fragment but a message's last,
and every pong); the I/O layer hands the count to its rate limit once per read.
Once our Close frame is out, the protocol reads only to find the client's
answer, and at most ``max_message_size`` + 64 KiB more (a whole message that
was already on its way, and a read's worth besides): a client that sends more
instead of closing fails the connection (:class:`ConnectionFailed`, 1008, no
second Close frame), so the I/O layer closes TCP at once rather than parse
until its close deadline.

Close codes (RFC 6455 7.4): a received code is valid if it is 1000-1003,
1007-1014 or 3000-4999, as in ``websockets`` and wsproto.  The Autobahn
TestSuite (25.10.1, cases 7.7.x and 7.9.x) agrees on every code it tests:
1000-1003, 1007-1011, 3000, 3999, 4000, 4999 valid; 0, 999, 1004-1006, 1016,
1100, 2000, 2999 invalid.  It differs from the RFC's text in two places: the
RFC reserves 1016-2999 for future revisions and extensions without telling a
receiver to refuse them (Autobahn, and we, refuse them: none is defined and no
extension is negotiated), and the RFC defines nothing at 5000 and above
(Autobahn 7.13.x accepts any behaviour there; we refuse them with 1002).
1012-1014 are not in RFC 6455 but in the IANA registry it created
(service restart, try again later, bad gateway); Autobahn does not test them.
"""

from __future__ import annotations

import codecs
import enum
from collections.abc import Iterator
from typing import Final, TypeAlias, final

import msgspec

__all__ = [
    "BinaryMessage",
    "CloseReceived",
    "ConnectionFailed",
    "Event",
    "Ping",
    "Pong",
    "ServerProtocol",
    "State",
    "TextMessage",
]


def _mask_python(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 5.3), as one big integer."""
    n = len(data)
    if not n:
        return b""
    stream = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


try:
    from tornado.speedups import websocket_mask as _mask
except ImportError:  # Tornado built without its C extension
    _mask = _mask_python


class State(enum.Enum):
    """Where the closing handshake is."""

    OPEN = 1  # both directions open
    CLOSING = 2  # a Close frame was sent or received, the handshake is not finished
    CLOSED = 3  # Close frames exchanged, or the connection failed: write, then close TCP


# --- events -------------------------------------------------------------------------
# msgspec Structs: created in C, about twice as fast as a class with __slots__ and
# an __init__, and the hot path makes one per message.  gc=False: they only hold
# bytes and str, so they can never be part of a reference cycle.


@final
class TextMessage(msgspec.Struct, frozen=True, gc=False):
    """A complete text message; ``data`` is valid UTF-8."""

    data: bytes


@final
class BinaryMessage(msgspec.Struct, frozen=True, gc=False):
    """A complete binary message."""

    data: bytes


@final
class Ping(msgspec.Struct, frozen=True, gc=False):
    """A Ping frame; not answered automatically: call :meth:`ServerProtocol.send_pong`."""

    data: bytes


@final
class Pong(msgspec.Struct, frozen=True, gc=False):
    """A Pong frame."""

    data: bytes


@final
class CloseReceived(msgspec.Struct, frozen=True, gc=False):
    """The client's Close frame, validated; ``code`` is ``None`` if it carried none.

    If we had not sent our Close frame, the state is CLOSING and the application
    answers with :meth:`ServerProtocol.send_close`; otherwise the state is CLOSED.
    """

    code: int | None
    reason: str


@final
class ConnectionFailed(msgspec.Struct, frozen=True, gc=False):
    """The client broke the protocol: the state is CLOSED.

    A Close frame with ``code`` is queued unless ours went already (then nothing is:
    e.g. 1008, a client that kept sending instead of answering our Close frame).
    """

    code: int
    reason: str


Event: TypeAlias = TextMessage | BinaryMessage | Ping | Pong | CloseReceived | ConnectionFailed

# --- framing ------------------------------------------------------------------------

_CONTINUATION: Final = 0x0
_TEXT: Final = 0x1
_BINARY: Final = 0x2
_CLOSE: Final = 0x8
_PING: Final = 0x9
_PONG: Final = 0xA

_PROTOCOL_ERROR: Final = 1002
_INVALID_DATA: Final = 1007
_POLICY_VIOLATION: Final = 1008
_MESSAGE_TOO_BIG: Final = 1009

# Fragments per message (RFC 6455 5.4 sets no limit).  A message of more frames is
# refused with 1009, like one of more bytes: each frame costs a header's parsing and a
# call, so a client could otherwise make a worker parse millions of empty continuation
# frames for one message.  Browsers never fragment what they send, and client libraries
# (websockets, aiohttp, wsproto) fragment only when the caller asks, in the chunks the
# caller picks: signaling messages (an SDP of a few KiB) have no reason to.  The
# signaling endpoint passes Autobahn's sections 5 and 6 with this limit (their most
# fragmented messages, 6.2.3/6.2.4, come one byte a frame, a few dozen frames); the
# 9.3/9.4 cases (4 MiB in 65,536 fragments of 64 B) run against the echo, limit off.
MAX_FRAGMENTS: Final = 128
# What is still read after our Close frame, beyond one message of the maximum size.
_CLOSE_SLACK: Final = 64 * 1024


def _first_byte_error(byte: int) -> str | None:
    """What is wrong with a frame's first byte on its own, if anything."""
    if byte & 0x70:
        return "reserved bits set"  # no extension was negotiated
    opcode = byte & 0x0F
    if opcode not in (_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG):
        return "reserved opcode"
    if opcode & 0x8 and not byte & 0x80:
        return "fragmented control frame"
    return None


# One lookup instead of three tests per frame on the hot path.
_FIRST_BYTE_ERRORS: Final = tuple(_first_byte_error(byte) for byte in range(256))


def _header(first: int, length: int) -> bytes:
    """An unmasked server frame header (RFC 6455 5.2)."""
    if length < 126:
        return bytes((first, length))
    if length < 0x10000:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


_TEXT_HEADERS: Final = tuple(_header(0x80 | _TEXT, n) for n in range(126))
_BINARY_HEADERS: Final = tuple(_header(0x80 | _BINARY, n) for n in range(126))


def _valid_close_code(code: int) -> bool:
    """A code a Close frame may carry (see the module docstring for the sources)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# Codes that mean "no code" (RFC 6455 7.4.1: never sent in a Close frame):
# 1005 no status received, 1006 abnormal closure, 1015 TLS failure.
_NO_CODE: Final = frozenset({1005, 1006, 1015})

_Utf8Decoder: Final = codecs.getincrementaldecoder("utf-8")


class _Message:
    """A message in progress: fragmented, or its frame's payload still arriving.

    Only a message that does not come whole in one read needs one: a whole,
    unfragmented frame is parsed without it.
    """

    __slots__ = ("data", "decoder", "fin", "frames", "key", "left", "offset", "opcode")

    def __init__(self, opcode: int) -> None:
        self.opcode = opcode  # _TEXT or _BINARY
        self.data = bytearray()  # its unmasked bytes so far
        self.decoder = _Utf8Decoder() if opcode == _TEXT else None  # text: UTF-8 so far
        # The data frame whose payload is arriving: bytes still to come, its mask,
        # how many payload bytes came (where the mask stands), and its FIN bit.
        self.left = 0
        self.key = b""
        self.offset = 0
        self.fin = False
        self.frames = 1  # its frames so far


class ServerProtocol:
    """One server-side WebSocket connection, from the end of the opening handshake.

    Feed it the client's bytes with :meth:`receive_data` and iterate the events;
    queue frames with the ``send_*`` methods and take the bytes with
    :meth:`data_to_send`.  Nothing raises on the client's behalf: a protocol
    violation is a :class:`ConnectionFailed` event.
    """

    __slots__ = (
        "_buffer",
        "_client_close",
        "_close_budget",
        "_fast",
        "_message",
        "_out",
        "_sending",
        "max_fragments",
        "max_message_size",
        "pending_bytes",
        "silent_frames",
        "state",
    )

    def __init__(
        self, max_message_size: int = 64 * 1024, max_fragments: int | None = MAX_FRAGMENTS
    ) -> None:
        self.max_message_size = max_message_size
        self.max_fragments = max_fragments  # None: no limit
        self.state: State = State.OPEN
        self._client_close: CloseReceived | None = None  # once the client's Close frame came
        # Queued frames (headers and payloads), in order; None while nothing is queued,
        # so an idle connection holds no list.
        self._out: list[bytes] | None = None
        # Their total size (read it; only the protocol changes it): an attribute, not a
        # property, since the I/O layer reads it on every send.
        self.pending_bytes = 0
        self._sending = True  # False once our Close frame is queued (or nothing may go out)
        # Whether the next read may take the one-frame-per-read shortcut: True; not once
        # our Close frame is out: False; None while an events iterator runs.
        self._fast: bool | None = True
        # Bytes still read after our Close frame (see the module docstring).
        self._close_budget = 0
        # Frames no event stands for: each fragment but a message's last, and pongs.
        # The I/O layer takes the count (and zeroes it) to charge them to its rate limit.
        self.silent_frames = 0
        # Received bytes not parsed yet.  Between reads this is only ever the tail of a
        # frame header or of a control frame (at most 14 or 131 bytes), since a data
        # frame's payload is taken as it arrives, so joining it to the next read keeps
        # buffering linear.  None once we stopped reading: the client's Close frame came,
        # the connection failed or EOF came.
        self._buffer: bytes | None = b""
        # A message in progress (fragmented, or its frame's payload still arriving).
        self._message: _Message | None = None

    @property
    def close_code(self) -> int | None:
        """The code of the client's Close frame, once it came; ``None`` if it carried none."""
        close = self._client_close
        return None if close is None else close.code

    @property
    def close_sent(self) -> bool:
        """Whether our Close frame is queued (or nothing may be sent any more)."""
        return not self._sending

    @property
    def close_reason(self) -> str | None:
        """The reason of the client's Close frame, once it came (``""`` if none); else ``None``."""
        close = self._client_close
        return None if close is None else close.reason

    # --- receiving ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> Iterator[Event]:
        """Buffer ``data`` and return an iterator over the events it completes.

        The iterator is lazy: frames are parsed as it is advanced, so anything the
        caller queues while handling an event goes out before what the protocol
        queues for a later one (the Close frame of a violation further on).
        Iterate it to the end, or drop it, before the next ``receive_data``.
        Parsing stops after a Close frame or a violation; later data is ignored.
        """
        buffer = self._buffer
        if buffer is None:  # we stopped reading
            return iter(())
        if type(data) is not bytes:
            data = bytes(data)
        if buffer:
            if not self._sending and self._over_close_budget(len(data)):
                return iter((self._fail(_POLICY_VIOLATION, "no close frame after ours"),))
            self._buffer = buffer + data
            return self._events()
        if self._message is None and len(data) >= 6 and self._fast:
            # The one-frame-per-read hot path: the read is exactly one whole, valid,
            # unfragmented data message.  Parsing it now is indistinguishable from
            # parsing it lazily (no later frame can queue anything, the state does not
            # change), and it saves creating and running a generator.
            first = data[0]
            length = data[1] ^ 0x80  # the mask bit must be set: then this is the length
            if (first == 0x81 or first == 0x82) and length < 127:
                start = 6
                if length == 126:
                    length = int.from_bytes(data[2:4], "big")
                    start = 8
                if start + length == len(data) and length <= self.max_message_size:
                    payload = _mask(data[start - 4 : start], data[start:])
                    if first == 0x82:
                        return iter((BinaryMessage(payload),))
                    if payload.isascii():
                        return iter((TextMessage(payload),))
                    try:
                        payload.decode()
                        return iter((TextMessage(payload),))
                    except UnicodeDecodeError:
                        pass  # the lazy path fails the connection in turn
        if not self._sending and self._over_close_budget(len(data)):
            return iter((self._fail(_POLICY_VIOLATION, "no close frame after ours"),))
        self._buffer = data
        return self._events()

    def _over_close_budget(self, size: int) -> bool:
        """After our Close frame: take ``size`` bytes from what may still be read."""
        self._close_budget -= size
        return self._close_budget < 0

    def receive_eof(self) -> None:
        """The client closed TCP: later data is ignored, nothing is sent; the state is CLOSED."""
        self._buffer = None
        self._sending = False
        self.state = State.CLOSED

    def _events(self) -> Iterator[Event]:
        if self._fast is None:
            raise RuntimeError("the previous receive_data() iterator is still running")
        buf = self._buffer
        if not buf:  # nothing to parse, or we stopped reading
            return
        self._buffer = b""
        self._fast = None
        pos = 0
        end = len(buf)
        mask = _mask  # a global looked up per iterator, so tests can swap it
        max_size = self.max_message_size
        try:
            msg = self._message  # None unless a message is in progress
            if msg is not None and msg.left:  # the rest of a data frame's payload
                pos = min(msg.left, end)
                failure = self._payload(msg, buf[:pos])
                if failure is not None:
                    yield failure
                    return
                if not msg.left and msg.fin:
                    done = self._message_done(msg)
                    msg = None
                    yield done
            while end - pos >= 2:
                first = buf[pos]
                second = buf[pos + 1]
                # Every 1002 rule first (all but one decided by these two bytes), then 1009.
                error = _FIRST_BYTE_ERRORS[first]
                opcode = first & 0x0F
                length = second & 0x7F
                if error is not None:
                    pass
                elif not second & 0x80:
                    error = "unmasked frame"
                elif opcode & 0x8:
                    if length > 125:
                        error = "control frame too long"
                elif opcode == _CONTINUATION:
                    if msg is None:
                        error = "unexpected continuation frame"
                elif msg is not None:
                    error = "expected a continuation frame"
                if error is not None:
                    yield self._fail(_PROTOCOL_ERROR, error)
                    return
                at = pos + 2
                if length >= 126:
                    if length == 126:
                        if end - at < 2:
                            break
                        length = int.from_bytes(buf[at : at + 2], "big")
                        at += 2
                    else:
                        if end - at < 8:
                            break
                        length = int.from_bytes(buf[at : at + 8], "big")
                        at += 8
                        if length >> 63:  # RFC 6455 5.2: the most significant bit must be 0
                            yield self._fail(_PROTOCOL_ERROR, "invalid frame length")
                            return
                if opcode & 0x8:  # control frames are not messages: no size limit but 125
                    if end - at < 4 + length:
                        break
                    pos = at + 4 + length
                    payload = mask(buf[at : at + 4], buf[at + 4 : pos])
                    if opcode == _PING:
                        yield Ping(payload)
                    elif opcode == _PONG:
                        self.silent_frames += 1
                        yield Pong(payload)
                    else:
                        pos = end
                        yield self._close(payload)
                        return
                    continue
                # The fragments so far count, interleaved control frames not.
                if msg is None:
                    if length > max_size:
                        yield self._fail(_MESSAGE_TOO_BIG, "message too big")
                        return
                elif length + len(msg.data) > max_size:
                    yield self._fail(_MESSAGE_TOO_BIG, "message too big")
                    return
                elif self.max_fragments is not None and msg.frames >= self.max_fragments:
                    yield self._fail(_MESSAGE_TOO_BIG, "too many fragments")
                    return
                if end - at < 4:
                    break
                start = at + 4
                if first & 0x80 and msg is None and end - start >= length:
                    # The common case: a whole, unfragmented message in this read.
                    pos = start + length
                    payload = mask(buf[at:start], buf[start:pos])
                    if opcode == _TEXT:
                        if not payload.isascii():  # ASCII is UTF-8: skip making a str
                            try:
                                payload.decode()
                            except UnicodeDecodeError:
                                yield self._fail(_INVALID_DATA, "invalid UTF-8")
                                return
                        yield TextMessage(payload)
                    else:
                        yield BinaryMessage(payload)
                    continue
                # A fragment, or a frame whose payload has not all arrived: take what
                # has, unmasked and (text) validated, into the message in progress.
                if msg is None:
                    msg = self._message = _Message(opcode)
                else:
                    msg.frames += 1
                if not first & 0x80:
                    self.silent_frames += 1  # a fragment: the message's event is its last
                msg.key = buf[at:start]
                msg.offset = 0
                msg.left = length
                msg.fin = bool(first & 0x80)
                pos = min(start + length, end)
                failure = self._payload(msg, buf[start:pos])
                if failure is not None:
                    yield failure
                    return
                if msg.left:
                    break  # everything was taken
                if msg.fin:
                    done = self._message_done(msg)
                    msg = None
                    yield done
        finally:
            self._fast = self._sending
            rest = self._buffer
            if pos < end and rest is not None:  # None: we stopped reading
                tail = buf[pos:]
                # Data received while this iterator was suspended goes after the tail.
                self._buffer = tail + rest if rest else tail

    def _payload(self, msg: _Message, masked: bytes) -> ConnectionFailed | None:
        """Take part of the current data frame's payload into the message in progress."""
        key = msg.key
        turn = msg.offset & 3
        if turn:  # the mask continues where the previous part stopped
            key = key[turn:] + key[:turn]
        data = _mask(key, masked)
        msg.offset += len(masked)
        msg.left -= len(masked)
        decoder = msg.decoder
        if decoder is not None:
            try:
                decoder.decode(data, not msg.left and msg.fin)
            except UnicodeDecodeError:
                return self._fail(_INVALID_DATA, "invalid UTF-8")
        msg.data += data
        return None

    def _message_done(self, msg: _Message) -> TextMessage | BinaryMessage:
        self._message = None
        if msg.opcode == _TEXT:
            return TextMessage(bytes(msg.data))
        return BinaryMessage(bytes(msg.data))

    def _close(self, body: bytes) -> CloseReceived | ConnectionFailed:
        """The client's Close frame: validate it and stop reading."""
        code: int | None = None
        reason = ""
        if len(body) == 1:
            return self._fail(_PROTOCOL_ERROR, "close frame too short")
        if body:
            code = int.from_bytes(body[:2], "big")
            if not _valid_close_code(code):
                return self._fail(_PROTOCOL_ERROR, "invalid close code")
            try:
                reason = body[2:].decode()
            except UnicodeDecodeError:
                return self._fail(_INVALID_DATA, "invalid UTF-8 in close reason")
        self._buffer = None  # later data is ignored
        self._message = None  # a message in progress is dropped: it can never be finished
        self.state = State.CLOSING if self._sending else State.CLOSED
        event = self._client_close = CloseReceived(code, reason)
        return event

    def _fail(self, code: int, reason: str) -> ConnectionFailed:
        """Fail the connection (RFC 6455 7.1.7): queue our Close frame unless it went already."""
        if self._sending:
            self._queue_close(code.to_bytes(2, "big") + reason.encode())
        self._buffer = None
        self._sending = False
        self._message = None
        self.state = State.CLOSED
        return ConnectionFailed(code, reason)

    # --- sending --------------------------------------------------------------------

    def send_text(self, data: bytes) -> None:
        """Queue a text message; ``data`` is UTF-8 already (it is not checked)."""
        if self._sending:
            n = len(data)
            header = _TEXT_HEADERS[n] if n < 126 else _header(0x80 | _TEXT, n)
            out = self._out
            if out is None:
                self._out = [header, data]
            else:
                out += (header, data)
            self.pending_bytes += len(header) + n

    def send_binary(self, data: bytes) -> None:
        """Queue a binary message."""
        if self._sending:
            n = len(data)
            header = _BINARY_HEADERS[n] if n < 126 else _header(0x80 | _BINARY, n)
            out = self._out
            if out is None:
                self._out = [header, data]
            else:
                out += (header, data)
            self.pending_bytes += len(header) + n

    def send_ping(self, data: bytes = b"") -> None:
        """Queue a Ping frame; ``data`` is at most 125 bytes (else ValueError)."""
        self._control(_PING, data)

    def send_pong(self, data: bytes = b"") -> None:
        """Queue a Pong frame, e.g. with a :class:`Ping`'s data; at most 125 bytes."""
        self._control(_PONG, data)

    def _control(self, opcode: int, data: bytes) -> None:
        if len(data) > 125:
            raise ValueError("a control frame carries at most 125 bytes")
        if self._sending:
            self._queue(bytes((0x80 | opcode, len(data))), data)

    def send_close(self, code: int | None = None, reason: str = "") -> None:
        """Queue our Close frame: start the closing handshake, or answer the client's.

        ``code=None`` echoes the client's code if its Close frame came (RFC 6455
        5.5.1), else sends a Close frame without a code.  1005, 1006 and 1015 stand
        for "no code" and are never sent: the frame goes without a code, and so
        without a reason.  Any other code a Close frame may not carry raises
        ValueError.  ``reason`` is cut to 123 bytes of UTF-8 on a character
        boundary.  Nothing is sent after our Close frame.
        """
        if code is None:
            code = self.close_code
        if code is not None and code not in _NO_CODE and not _valid_close_code(code):
            raise ValueError(f"{code} is not a close code a Close frame may carry")
        if not self._sending:
            return
        if code is None or code in _NO_CODE:
            body = b""
        else:
            encoded = reason.encode(errors="replace")
            if len(encoded) > 123:
                encoded = encoded[:123].decode(errors="ignore").encode()
            body = code.to_bytes(2, "big") + encoded
        self._queue_close(body)
        self._sending = False
        if self._fast:  # (None while parsing: the iterator's end sets it)
            self._fast = False  # every read is counted against the budget from now on
        self._close_budget = self.max_message_size + _CLOSE_SLACK
        self.state = State.CLOSING if self._client_close is None else State.CLOSED

    def _queue_close(self, body: bytes) -> None:
        self._queue(bytes((0x80 | _CLOSE, len(body))), body)

    def _queue(self, header: bytes, payload: bytes) -> None:
        out = self._out
        if out is None:
            self._out = [header, payload]
        else:
            out += (header, payload)
        self.pending_bytes += len(header) + len(payload)

    def data_to_send(self) -> bytes:
        """Everything queued so far, in order, as one ``bytes`` (``b""`` if nothing)."""
        out = self._out
        if out is None:
            return b""
        self._out = None  # the list goes with the data: an idle connection holds none
        self.pending_bytes = 0
        return b"".join(out)
