"""MCP v1, the client-facing protocol: what browsers and bots send and receive.

Clients send JSON text frames whose ``type`` is one of :data:`RELAYED_TYPES`;
the server checks the frame once with :func:`check_client_frame` (one msgspec
decode into the :data:`ClientMessage` tagged union) and forwards the original
text untouched.  Everything the server itself says is one of the
event Structs below, encoded once with :func:`encode_event`.

Events the server adds (``joined``, ``peer-joined``, ``peer-left``, ``info``)
are new ``type`` values that clients written against the original protocol
ignore; ``error`` frames keep the original ``message`` text and add a ``code``.
"""

from __future__ import annotations

from typing import ClassVar, Final, TypeAlias

import msgspec

RELAYED_TYPES: Final = frozenset({"offer", "answer", "candidate", "leave"})
#: The relayed types in the order of their ``kind`` (what :func:`client_frame_kind` returns).
RELAYED_KINDS: Final = ("candidate", "leave", "offer", "answer")
CANDIDATE, LEAVE, OFFER, ANSWER = range(len(RELAYED_KINDS))
DEFAULT_ROOM: Final = "default"


class CloseCode:
    """WebSocket close codes the server uses (4000-4999 are application codes)."""

    GOING_AWAY: Final = 1001  # server shutting down; reconnect
    PROTOCOL_ERROR: Final = 1002  # a malformed or unmasked frame, a bad close frame
    INVALID_PAYLOAD: Final = 1007  # a text message (or close reason) that is not UTF-8
    MESSAGE_TOO_BIG: Final = 1009  # a message over --max-message-size
    TRY_AGAIN_LATER: Final = 1013  # router unavailable; reconnect after a pause
    TOO_SLOW: Final = 4008  # the client did not read: more than --max-pending-bytes queued for it
    INVALID_ROOM: Final = 4400  # the room name breaks the room name rules
    INVALID_TOKEN: Final = 4401  # room tokens are required and this one is missing/wrong/expired
    INVALID_RESUME: Final = 4410  # the resume token is used, forged, expired or for another room
    REPLACED: Final = 4411  # this peer resumed on a newer connection, which took its slot
    ROOM_FULL: Final = 4409  # the room already has two peers
    RATE_LIMITED: Final = 4429  # the client kept sending over its --rate-limit


class ErrorCode:
    """Stable values of ``code`` in ``{"type": "error"}`` frames."""

    ROOM_FULL: Final = "room_full"
    INVALID_JSON: Final = "invalid_json"
    INVALID_MESSAGE: Final = "invalid_message"
    UNKNOWN_TYPE: Final = "unknown_type"
    ROUTER_UNAVAILABLE: Final = "router_unavailable"
    RATE_LIMITED: Final = "rate_limited"
    INVALID_ROOM: Final = "invalid_room"
    INVALID_TOKEN: Final = "invalid_token"
    TOKEN_EXPIRED: Final = "token_expired"
    INVALID_RESUME: Final = "invalid_resume"


ERROR_CODES: Final[frozenset[str]] = frozenset(
    v for k, v in vars(ErrorCode).items() if k.isupper() and isinstance(v, str)
)
"""Every ``code`` an ``error`` frame can carry (the README's table lists them all)."""


class IceServer(msgspec.Struct, omit_defaults=True):
    """One ``RTCIceServer``: STUN ``urls`` alone, TURN ``urls`` with a username and credential."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Joined(msgspec.Struct, tag="joined", tag_field="type", omit_defaults=True):
    """You hold a slot in ``room``; ``initiator``: a peer was waiting, so you make the offer.

    ``iceServers`` (when the server has STUN/TURN configured, :mod:`mcp_tornado.ice`)
    goes straight into ``new RTCPeerConnection({iceServers})``; ``resume``/``resumeGrace``
    only for a client that asked for resume (``resumable=1``).  Fields left at their
    default are omitted, so clients of the original protocol see the frame they know.
    """

    room: str
    peers: int
    initiator: bool
    ice_servers: list[IceServer] | None = msgspec.field(default=None, name="iceServers")
    resume: str | None = None  # the token to resume this slot with (single use)
    resume_grace: float | None = msgspec.field(default=None, name="resumeGrace")


class Resumed(msgspec.Struct, tag="resumed", tag_field="type", omit_defaults=True):
    """You have your slot back (``?resume=TOKEN``); the messages held for you follow.

    ``iceServers`` as in :class:`Joined` (fresh credentials for an ICE restart).
    """

    room: str
    peers: int
    initiator: bool
    resume: str  # the next token: the one just used is spent
    resume_grace: float = msgspec.field(name="resumeGrace")
    ice_servers: list[IceServer] | None = msgspec.field(default=None, name="iceServers")


class PeerReconnecting(msgspec.Struct, tag="peer-reconnecting", tag_field="type"):
    """The other peer's socket dropped; it keeps its slot for its resume grace."""

    room: str


class PeerResumed(msgspec.Struct, tag="peer-resumed", tag_field="type"):
    """The other peer is back (what you sent meanwhile was held and has been delivered)."""

    room: str


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


Event: TypeAlias = (
    Joined
    | PeerJoined
    | PeerLeft
    | PeerGone
    | Info
    | Error  # (the original protocol's, and)
    | Resumed
    | PeerReconnecting
    | PeerResumed  # resume's
)

_event_encoder = msgspec.json.Encoder()


def event_frame(event: Event) -> bytes:
    """Encode a server event as the payload of one text frame (UTF-8 JSON)."""
    return _event_encoder.encode(event)


def encode_event(event: Event) -> str:
    """Encode a server event as the text of one WebSocket frame."""
    return event_frame(event).decode()


# --- what clients send -----------------------------------------------------------
#
# One tagged union, decoded once per frame.  Known fields are optional but, when
# present, must have the right JSON type; unknown fields are skipped (never
# decoded into Python objects) and still reach the peer, because the frame is
# forwarded as the text the client sent.  Nested objects whose content we do not
# check decode into field-less Structs, which skips their content cheaply.


class _AnyObject(msgspec.Struct):
    """Any JSON object; its content is skipped, not decoded."""


class _SessionDescription(msgspec.Struct):
    """``RTCSessionDescriptionInit``: ``{"type": "offer", "sdp": "v=0..."}``."""

    type: str | None = None
    sdp: str | None = None


class Offer(msgspec.Struct, tag="offer", tag_field="type"):
    """``{"type":"offer","sdp":"..."}`` or ``{"type":"offer","offer":{"type":..,"sdp":..}}``."""

    kind: ClassVar[int] = OFFER

    sdp: str | None = None
    offer: _SessionDescription | None = None


class Answer(msgspec.Struct, tag="answer", tag_field="type"):
    """``{"type":"answer","sdp":"..."}`` or ``{"type":"answer","answer":{...}}``."""

    kind: ClassVar[int] = ANSWER

    sdp: str | None = None
    answer: _SessionDescription | None = None


class Candidate(msgspec.Struct, tag="candidate", tag_field="type"):
    """``{"type":"candidate","candidate":{...}}`` or ``{"type":"candidate","candidate":"..."}``."""

    kind: ClassVar[int] = CANDIDATE

    candidate: _AnyObject | str | None = None


class Leave(msgspec.Struct, tag="leave", tag_field="type"):
    """``{"type":"leave"}``: the client is going (extra fields such as ``reason`` are fine)."""

    kind: ClassVar[int] = LEAVE


ClientMessage: TypeAlias = Offer | Answer | Candidate | Leave

_client_decoder = msgspec.json.Decoder(ClientMessage)
_UNKNOWN_TAG_PREFIX: Final = "Invalid value '"
_UNKNOWN_TAG_SUFFIX: Final = "' - at `$.type`"
_MAX_DETAIL: Final = 64  # characters of client-controlled text echoed back in an error


ROOM_FULL_EVENT: Final = encode_event(Error(ErrorCode.ROOM_FULL, "Room is full"))
NO_PEER_EVENT: Final = encode_event(
    Info("no_peer", "No other peer in the room; message not delivered")
)
PEER_GONE_EVENT: Final = encode_event(PeerGone())
ROUTER_UNAVAILABLE_EVENT: Final = encode_event(
    Error(ErrorCode.ROUTER_UNAVAILABLE, "Signaling router unavailable; retry shortly")
)
UNDELIVERED_EVENT: Final = encode_event(
    Error(
        ErrorCode.ROUTER_UNAVAILABLE,
        "Signaling router unavailable; message not delivered, retry shortly",
    )
)


INVALID_RESUME_EVENT: Final = encode_event(
    Error(ErrorCode.INVALID_RESUME, "Invalid resume token (used, expired or unknown); join afresh")
)


def check_client_frame(frame: str | bytes) -> Error | None:
    """Return ``None`` if ``frame`` may be relayed, else the error to send back."""
    kind = client_frame_kind(frame)
    return kind if isinstance(kind, Error) else None


def client_frame_kind(frame: str | bytes) -> int | Error:
    """The kind of a frame that may be relayed (an index of :data:`RELAYED_KINDS`), else the error.

    Exactly one msgspec decode per frame; the decoded message is thrown away
    (the original text is what gets relayed), all but its type.
    """
    try:
        return _client_decoder.decode(frame).kind
    except msgspec.ValidationError as exc:
        return _validation_error(str(exc))
    except msgspec.DecodeError:
        return Error(ErrorCode.INVALID_JSON, "Invalid JSON")
    except RecursionError:
        return Error(ErrorCode.INVALID_MESSAGE, "Invalid message format: nested too deeply")


def _validation_error(detail: str) -> Error:
    # msgspec reports an unknown tag as "Invalid value 'X' - at `$.type`".
    if detail.startswith(_UNKNOWN_TAG_PREFIX) and detail.endswith(_UNKNOWN_TAG_SUFFIX):
        kind = detail[len(_UNKNOWN_TAG_PREFIX) : -len(_UNKNOWN_TAG_SUFFIX)]
        if kind not in RELAYED_TYPES:  # else: a duplicate "type" key, a malformed message
            return Error(ErrorCode.UNKNOWN_TYPE, f"Unknown message type: {kind[:_MAX_DETAIL]}")
    if len(detail) > 2 * _MAX_DETAIL:
        detail = detail[: 2 * _MAX_DETAIL] + "..."
    return Error(ErrorCode.INVALID_MESSAGE, f"Invalid message format: {detail}")


def close_reason(code: int) -> str:
    """The reason text sent with each of our close codes."""
    return _CLOSE_REASONS.get(code, "")


_CLOSE_REASONS: Final = {
    CloseCode.GOING_AWAY: "server shutting down",
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.INVALID_PAYLOAD: "invalid UTF-8",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.TRY_AGAIN_LATER: "router unavailable, try again later",
    CloseCode.TOO_SLOW: "client too slow: not reading its messages",
    CloseCode.INVALID_ROOM: "invalid room name",
    CloseCode.INVALID_TOKEN: "invalid or expired room token",
    CloseCode.INVALID_RESUME: "invalid resume token",
    CloseCode.REPLACED: "resumed on another connection",
    CloseCode.ROOM_FULL: "room is full",
    CloseCode.RATE_LIMITED: "too many messages",
}
