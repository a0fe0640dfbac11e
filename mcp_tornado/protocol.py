"""MCP v1, the client-facing protocol: what browsers and bots send and receive.

Clients send JSON text frames whose ``type`` is one of :data:`RELAYED_TYPES`;
the server checks the frame once with :func:`check_client_frame` and forwards
the original text untouched.  Everything the server itself says is one of the
event Structs below, encoded once with :func:`encode_event`.

Events the server adds (``joined``, ``peer-joined``, ``peer-left``, ``info``)
are new ``type`` values that clients written against the original protocol
ignore; ``error`` frames keep the original ``message`` text and add a ``code``.
"""

from __future__ import annotations

from typing import Final, TypeAlias

import msgspec

RELAYED_TYPES: Final = frozenset({"offer", "answer", "candidate", "leave"})
DEFAULT_ROOM: Final = "default"


class CloseCode:
    """WebSocket close codes the server uses (4000-4999 are application codes)."""

    GOING_AWAY: Final = 1001  # server shutting down; reconnect
    TRY_AGAIN_LATER: Final = 1013  # router unavailable; reconnect after a pause
    ROOM_FULL: Final = 4409  # the room already has two peers


class ErrorCode:
    """Stable values of ``code`` in ``{"type": "error"}`` frames."""

    ROOM_FULL: Final = "room_full"
    INVALID_JSON: Final = "invalid_json"
    INVALID_MESSAGE: Final = "invalid_message"
    UNKNOWN_TYPE: Final = "unknown_type"
    ROUTER_UNAVAILABLE: Final = "router_unavailable"


class Joined(msgspec.Struct, tag="joined", tag_field="type"):
    """You hold a slot in ``room``; ``initiator``: a peer was waiting, so you make the offer."""

    room: str
    peers: int
    initiator: bool


class PeerJoined(msgspec.Struct, tag="peer-joined", tag_field="type"):
    """A second peer arrived in your room; it will send the offer."""

    room: str
    peers: int


class PeerLeft(msgspec.Struct, tag="peer-left", tag_field="type"):
    """The other peer is gone (always preceded by a plain ``{"type":"leave"}``)."""

    room: str
    peers: int


class PeerGone(msgspec.Struct, tag="leave", tag_field="type"):
    """The original protocol's way of saying the other peer left."""


class Info(msgspec.Struct, tag="info", tag_field="type"):
    """Informational, not an error: e.g. ``no_peer``, a message sent while alone was dropped."""

    code: str
    message: str


class Error(msgspec.Struct, tag="error", tag_field="type"):
    """Something the client sent or asked for was refused.  ``code`` is from :class:`ErrorCode`."""

    code: str
    message: str


Event: TypeAlias = Joined | PeerJoined | PeerLeft | PeerGone | Info | Error

_event_encoder = msgspec.json.Encoder()


def encode_event(event: Event) -> str:
    """Encode a server event as the text of one WebSocket frame."""
    return _event_encoder.encode(event).decode()


class _Envelope(msgspec.Struct):
    # Only ``type`` is decoded; every other field is the peers' business.
    type: str


_envelope_decoder = msgspec.json.Decoder(_Envelope)

ROOM_FULL_EVENT: Final = encode_event(Error(ErrorCode.ROOM_FULL, "Room is full"))
NO_PEER_EVENT: Final = encode_event(
    Info("no_peer", "No other peer in the room; message not delivered")
)
PEER_GONE_EVENT: Final = encode_event(PeerGone())


def check_client_frame(frame: str | bytes) -> Error | None:
    """Return ``None`` if ``frame`` may be relayed, else the error to send back."""
    try:
        envelope = _envelope_decoder.decode(frame)
    except msgspec.ValidationError as exc:
        return Error(ErrorCode.INVALID_MESSAGE, f"Invalid message format: {exc}")
    except msgspec.DecodeError:
        return Error(ErrorCode.INVALID_JSON, "Invalid JSON")
    if envelope.type not in RELAYED_TYPES:
        return Error(ErrorCode.UNKNOWN_TYPE, f"Unknown message type: {envelope.type[:64]}")
    return None


def close_reason(code: int) -> str:
    """The reason text sent with each of our close codes."""
    return _CLOSE_REASONS.get(code, "")


_CLOSE_REASONS: Final = {
    CloseCode.GOING_AWAY: "server shutting down",
    CloseCode.TRY_AGAIN_LATER: "router unavailable, try again later",
    CloseCode.ROOM_FULL: "room is full",
}
