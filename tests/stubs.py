"""Stand-ins for a transport and a router link, to drive connections and peers without sockets."""

from __future__ import annotations

import asyncio

from tests.rawws import TEXT, Frame, decode_server_frames


class StubTransport(asyncio.Transport):
    """Records what is written; ``buffered`` is what it claims to hold unsent."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.buffered = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default

    def forget_frames(self) -> None:
        """Forget the frames written so far (keep the HTTP response)."""
        self.writes = [self.head() + b"\r\n\r\n"]

    def head(self) -> bytes:
        """The HTTP response head."""
        return b"".join(self.writes).split(b"\r\n\r\n", 1)[0]

    def frames(self) -> list[Frame]:
        """The WebSocket frames written after the handshake response."""
        return decode_server_frames(b"".join(self.writes).split(b"\r\n\r\n", 1)[1])

    def texts(self) -> list[str]:
        """The payloads of the text frames written after the handshake response."""
        return [frame.text() for frame in self.frames() if frame.opcode == TEXT]


class StubLink:
    """Records what the hub asks of the router; answers nothing by itself."""

    ready = True

    def __init__(self) -> None:
        self.joins: list[tuple[int, str]] = []
        self.relayed: list[tuple[int, bytes]] = []
        self.fences: list[tuple[int, int]] = []
        self.left: list[int] = []
        self.suspended: list[int] = []  # peers whose socket ended without a goodbye
        self.resumes: list[tuple[int, str, str]] = []
        self.resumable_joins: list[int] = []

    def join(self, peer_id: int, room: str, resumable: bool = False) -> None:
        self.joins.append((peer_id, room))
        if resumable:
            self.resumable_joins.append(peer_id)

    def resume(self, peer_id: int, room: str, token: str) -> None:
        self.resumes.append((peer_id, room, token))

    def relay(self, peer_id: int, payload: bytes) -> bool:
        self.relayed.append((peer_id, payload))
        return True

    def fence(self, peer_id: int, seq: int) -> None:
        self.fences.append((peer_id, seq))

    def leave(self, peer_id: int, suspend: bool = False) -> bool:
        (self.suspended if suspend else self.left).append(peer_id)
        return self.ready
