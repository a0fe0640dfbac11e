"""A tiny blocking WebSocket client over a raw socket, for tests that must misbehave.

It can send any bytes (broken frames, bad opcodes, unmasked frames), stop
reading on purpose (a slow reader with a small receive buffer), and report
exactly how the server answered: an HTTP status at the handshake, frames, and
the close code.  Blocking and synchronous, so hypothesis can drive it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import ssl
import struct
import time
from typing import Any, Final, NamedTuple

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA


class Frame(NamedTuple):
    opcode: int
    payload: bytes

    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> dict[str, Any]:
        data = json.loads(self.payload)
        assert isinstance(data, dict)
        return data

    @property
    def close_code(self) -> int | None:
        if self.opcode != CLOSE or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code


class Closed(Exception):
    """The server ended the connection; ``code`` is its close code (``None``: no close frame)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


def encode_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return head + key + masked


def decode_server_frames(data: bytes) -> list[Frame]:
    """Split unmasked server frames (whole ones only) into :class:`Frame` values."""
    found: list[Frame] = []
    pos = 0
    while pos + 2 <= len(data):
        opcode, size = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if size == 126:
            size = struct.unpack_from("!H", data, pos)[0]
            pos += 2
        elif size == 127:
            size = struct.unpack_from("!Q", data, pos)[0]
            pos += 8
        found.append(Frame(opcode, data[pos : pos + size]))
        pos += size
    return found


def upgrade_request(port: int, path: str, headers: dict[str, str] | None = None) -> bytes:
    """The bytes of a WebSocket upgrade request for ``path`` (with a fresh key)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_head(sock: socket.socket) -> bytes:
    """Read until the end of an HTTP response head (or EOF); may hold bytes after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class RawWebSocket:
    """One connection.  :meth:`connect` returns it after the handshake (or raises)."""

    def __init__(self, sock: socket.socket, status: int, leftover: bytes) -> None:
        self.sock = sock
        self.status = status
        self._buffer = leftover
        self.close_code: int | None = None

    @classmethod
    def handshake(
        cls,
        port: int,
        path: str = "/ws/signal/",
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        timeout: float = 5.0,
        tls: ssl.SSLContext | None = None,
    ) -> RawWebSocket:
        """Open a connection (``wss://`` with ``tls``); check ``.status`` (101 means upgraded)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is negotiated small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(upgrade_request(port, path, headers))
        head, _, rest = read_head(sock).partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].split()
        status = int(status_line[1]) if len(status_line) > 1 else 0
        return cls(sock, status, rest)

    @classmethod
    def connect(cls, port: int, query: str = "", **kwargs: Any) -> RawWebSocket:
        ws = cls.handshake(port, "/ws/signal/" + query, **kwargs)
        assert ws.status == 101, f"handshake answered {ws.status}"
        return ws

    # --- sending ---------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str | bytes) -> None:
        payload = text.encode() if isinstance(text, str) else text
        self.send_raw(encode_frame(TEXT, payload))

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_text(json.dumps(message))

    # --- receiving -------------------------------------------------------------

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self._buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame in time")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise
            except OSError:  # reset by the server
                chunk = b""
            if not chunk:
                raise Closed(self.close_code)
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def recv_frame_raw(self, timeout: float = 5.0) -> Frame:
        """The next frame as it came, control frames included."""
        deadline = time.monotonic() + timeout
        b0, b1 = self._read(2, deadline)
        size = b1 & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read(2, deadline))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read(8, deadline))[0]
        return Frame(b0 & 0x0F, self._read(size, deadline))

    def recv_frame(self, timeout: float = 5.0) -> Frame:
        """The next data frame (pings answered, pongs skipped); raises :class:`Closed` at end."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_frame_raw(max(0.0, deadline - time.monotonic()))
            if frame.opcode == PING:
                self.send_raw(encode_frame(PONG, frame.payload))
                continue
            if frame.opcode == PONG:
                continue
            if frame.opcode == CLOSE:
                self.close_code = frame.close_code
                raise Closed(self.close_code)
            return frame

    def recv_json(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.recv_frame(timeout).json()

    def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            message = self.recv_json(timeout)
            if message.get("type") == kind:
                return message

    def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; return the close code (``None``: no close frame)."""
        try:
            while True:
                self.recv_frame(timeout)
        except Closed as closed:
            return closed.code

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send_raw(encode_frame(CLOSE, struct.pack("!H", 1000)))
        self.sock.close()

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
