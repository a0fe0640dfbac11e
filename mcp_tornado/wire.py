"""Worker <-> router wire format: the one definition of every message on the ZeroMQ hop.

Each ZeroMQ message is a single frame holding a msgpack array of the Structs
below (a *batch*): workers and the router collect what they have to say during
one turn of their loop and send it as one frame, which cuts syscalls and
router wake-ups by an order of magnitude under load.

The worker's DEALER sets its routing id to its worker name, so on the router
side a message arrives as ``[worker_id, batch]`` and is answered the same way.

Peers are named by ``(worker_id, peer)`` where ``peer`` is an integer the
worker allocates; the router never invents peer ids.  Client payloads travel as
the exact bytes the client sent (msgpack ``bin``): the worker that received the
frame checked its UTF-8 once, and nobody past it decodes, re-checks or
re-encodes them.

Every Struct is ``array_like`` (encoded as a positional array, not a map) and
tagged with a short integer so a batch decodes straight into typed objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import msgspec


class _Msg(msgspec.Struct, array_like=True, tag_field="t"):
    pass


# --- worker -> router ---------------------------------------------------------


class PeerRecord(msgspec.Struct, array_like=True, frozen=True):
    """A live peer, as re-registered by a worker after a router restart."""

    peer: int
    room: str
    paired: bool  # whether the worker last saw this peer with a partner
    resume: str = ""  # its resume token, if it is resumable (a restarted router relearns it)


class WorkerInfo(msgspec.Struct, array_like=True, frozen=True):
    """Who a worker is, for metrics and ``mcp-tornado status`` (:mod:`mcp_tornado.telemetry`)."""

    host: str
    pid: int
    index: int  # its slot under ``serve`` (-1: started by hand)
    generation: int  # how many times ``serve`` restarted that slot
    started: float  # unix time the process started
    welcomed: int  # Welcomes it had before this Hello: > 0 means a re-registration


class Hello(_Msg, tag=1):
    """Register (or re-register) a worker and every peer it holds.

    Sent when the worker starts, when it notices the router came back, and when
    the router asks with :class:`Reregister`.  The router answers :class:`Welcome`.
    """

    peers: list[PeerRecord]
    info: WorkerInfo | None = None
    # The worker's --max-connections (0: unlimited): the router lets it hold no
    # more peers than that, nor than its own --max-peers-per-worker.
    max_peers: int = 0
    # The worker's map of router shards (:attr:`mcp_tornado.shards.ShardMap.fingerprint`);
    # a router with another one answers :class:`WrongShardMap`.  "": a worker that
    # predates shards (accepted by a router that is the only shard).
    shard_map: str = ""


class Join(_Msg, tag=2):
    """A client connected and wants a slot in ``room``; ``resumable``: it asked for resume."""

    peer: int
    room: str
    resumable: bool = False


class Relay(_Msg, tag=3):
    """Forward ``payload`` (the client's frame, untouched) to the other peer of the room."""

    peer: int
    payload: bytes


class Leave(_Msg, tag=4):
    """The peer's WebSocket is closing; free its slot and answer :class:`Left`."""

    peer: int


class Ping(_Msg, tag=5):
    """Heartbeat.  Both sides send one every ``heartbeat_interval`` seconds."""

    epoch: str  # the sender's instance id; a new value means the sender restarted
    # A worker's send time (its own monotonic clock): the router sends the Ping back
    # at once with this value, and the worker measures the round trip.  0: none.
    sent: float = 0.0


class Bye(_Msg, tag=6):
    """The sender is shutting down on purpose: the other side need not wait for heartbeats."""


class Fence(_Msg, tag=7):
    """Answer :class:`Fenced` once everything ``peer`` sent before this is handled.

    A worker whose two peers of a room are both its own relays between them
    directly, without this hop; it fences each peer first, so that the messages
    it already routed through the router reach the partner before the direct ones.
    """

    peer: int
    seq: int  # the worker's fence number for this peer; only the latest counts


class HistogramDelta(msgspec.Struct, array_like=True, frozen=True):
    """Observations since the last :class:`Stats`: per bucket (the last is +Inf), and their sum."""

    counts: list[int]
    sum: float


class Stats(_Msg, tag=8):
    """A worker's metrics since its previous Stats, sent with each heartbeat.

    Counters and histograms are *deltas*, so the router's totals never count
    anything twice and never go backwards, whichever process restarts; gauges
    are current values.  Keys are those of :mod:`mcp_tornado.telemetry`.
    """

    counters: dict[str, int]
    histograms: dict[str, HistogramDelta]
    gauges: dict[str, int]


class Query(_Msg, tag=9):
    """``mcp-tornado status`` asks for :class:`Status`; the asker is not a worker."""


class Lost(_Msg, tag=40):
    """``peer``'s socket ended without a ``leave`` or a clean close.

    (See :mod:`mcp_tornado.router.suspended`.)

    A resumable peer is suspended (keeps its slot for the resume grace); any
    other is freed as by :class:`Leave`.  Answered with :class:`Left` too.
    """

    peer: int


class Resume(_Msg, tag=41):
    """A client asks to take back a suspended slot of ``room`` with ``token``.

    Answered with :class:`Resumed` (then the held messages, as :class:`Deliver`
    and the other usual messages) or :class:`ResumeRefused`.
    """

    peer: int
    room: str
    token: str


# --- router -> worker ---------------------------------------------------------


class Welcome(_Msg, tag=20):
    """Answer to :class:`Hello`; ``rejected`` peers lost a resync conflict (room was full)."""

    epoch: str
    rejected: list[int]
    # Peers the router will not take now, told apart from a full room: over the
    # worker's cap, paired when the router dropped their worker (their partners
    # were told they left), or listed after the resync grace for a room someone
    # else holds (router/broker.py).  The worker closes them with 1013; their
    # clients retry.
    refused: list[int] = msgspec.field(default_factory=list)


class WrongShardMap(_Msg, tag=30):
    """Answer to a :class:`Hello` whose ``shard_map`` is not the router's: not registered.

    The worker lists other router shards than the router was started for
    (``--router`` vs ``--shard``/``--shards``); it would send rooms to the wrong
    shard, so it is refused until one of them is restarted with the right map.
    """

    expected: str  # the router's map fingerprint
    shard: int  # the router's index


class Joined(_Msg, tag=21):
    """``peer`` holds a slot in ``room``; ``peers`` counts it; ``initiator``: a peer was waiting."""

    peer: int
    room: str
    peers: int
    initiator: bool
    local_partner: int = 0  # the partner's id when it is on the same worker, else 0
    resume: str = ""  # the peer's resume token (only when it asked for resume)
    resume_grace: float = 0.0


class RoomFull(_Msg, tag=22):
    """``peer`` was refused: ``room`` already has two peers (or, ``over_cap``, its worker
    holds as many peers as the router lets one worker hold: the client may retry)."""

    peer: int
    room: str
    over_cap: bool = False


class PeerJoined(_Msg, tag=23):
    """Another peer joined ``peer``'s room."""

    peer: int
    room: str
    peers: int
    local_partner: int = 0  # the newcomer's id when it is on the same worker, else 0


class PeerLeft(_Msg, tag=24):
    """The other peer of ``peer``'s room left (closed, vanished, or its worker died)."""

    peer: int
    room: str
    peers: int


class Deliver(_Msg, tag=25):
    """Write ``payload`` to ``peer``'s WebSocket as it is (a text frame; UTF-8 already checked)."""

    peer: int
    payload: bytes


class NoPeer(_Msg, tag=26):
    """A message from ``peer`` was not delivered: it is alone in its room."""

    peer: int


class Reregister(_Msg, tag=27):
    """The router does not know this worker (it restarted): send :class:`Hello` again.

    ``undelivered`` lists peers whose messages in the offending batch were dropped.
    """

    undelivered: list[int]


class Left(_Msg, tag=29):
    """``peer``'s :class:`Leave` is done: its slot is free, its partner told.

    The worker completes the peer's closing handshake only after this, so a
    client whose close has completed has left its room at the router (and may
    rejoin it at once, through any worker).
    """

    peer: int


class Fenced(_Msg, tag=28):
    """Everything ``peer`` sent before its :class:`Fence` number ``seq`` has been handled."""

    peer: int
    seq: int


class WorkerStatus(msgspec.Struct, array_like=True, frozen=True):
    """One registered worker, as :class:`Status` reports it."""

    name: str
    host: str
    pid: int
    index: int
    generation: int
    uptime: float  # seconds
    peers: int
    connections: int
    heartbeat_age: float  # seconds since the router last heard from it


class Status(_Msg, tag=31):
    """The router's answer to :class:`Query` (not to a worker: to ``mcp-tornado status``)."""

    epoch: str
    uptime: float
    generation: int  # the router's restarts under ``serve``
    rooms: int
    peers: int
    messages_per_s: float  # relayed messages per second over the last few seconds
    messages: int  # relayed messages since the router started
    workers: list[WorkerStatus]
    shard_map: str = ""  # "shard I of N, map FINGERPRINT" (mcp_tornado.shards)


class Resumed(_Msg, tag=40):
    """``peer`` took back its suspended slot; what was held for it follows in this stream."""

    peer: int
    room: str
    peers: int
    initiator: bool
    resume: str  # its next token
    resume_grace: float
    local_partner: int = 0


class ResumeRefused(_Msg, tag=41):
    """``peer``'s :class:`Resume` was refused: a used, forged or expired token, or another room."""

    peer: int


class PeerReconnecting(_Msg, tag=42):
    """The other peer of ``peer``'s room is suspended: its socket dropped, it may resume."""

    peer: int
    room: str


class PeerResumed(_Msg, tag=43):
    """The other peer of ``peer``'s room resumed (``local_partner``: on this worker)."""

    peer: int
    room: str
    local_partner: int = 0


class Replaced(_Msg, tag=44):
    """``peer``'s slot was resumed by a newer connection: close it (4411) without leaving."""

    peer: int


ToRouter: TypeAlias = (
    Hello | Join | Relay | Leave | Fence | Ping | Bye | Stats | Query | Lost | Resume
)
ToWorker: TypeAlias = (
    Welcome
    | Joined
    | RoomFull
    | PeerJoined
    | PeerLeft
    | Deliver
    | NoPeer
    | Fenced
    | Left
    | Reregister
    | Ping
    | Bye
    | Resumed
    | ResumeRefused
    | PeerReconnecting
    | PeerResumed
    | Replaced
    | WrongShardMap
    | Status  # (to a status query, not to a worker; a worker ignores it)
)

_encoder = msgspec.msgpack.Encoder()
_to_router_decoder = msgspec.msgpack.Decoder(list[ToRouter])
_to_worker_decoder = msgspec.msgpack.Decoder(list[ToWorker])


def encode_batch(messages: Sequence[ToRouter | ToWorker]) -> bytes:
    """Encode a batch of messages as one frame."""
    return _encoder.encode(messages)


def decode_to_router(frame: bytes) -> list[ToRouter]:
    """Decode a worker's batch; raises ``msgspec.DecodeError``/``ValidationError`` if malformed."""
    try:
        return _to_router_decoder.decode(frame)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise _malformed(exc) from None


def decode_to_worker(frame: bytes) -> list[ToWorker]:
    """Decode a router's batch; raises ``msgspec.DecodeError``/``ValidationError`` if malformed."""
    try:
        return _to_worker_decoder.decode(frame)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise _malformed(exc) from None


def decode_status(frame: bytes) -> Status:
    """Decode the router's answer to a :class:`Query`; raises like :func:`decode_to_worker`."""
    batch = decode_to_worker(frame)
    if len(batch) != 1 or type(batch[0]) is not Status:
        raise msgspec.ValidationError(f"expected one Status, got {batch!r:.100}")
    return batch[0]


def _malformed(exc: Exception) -> msgspec.DecodeError:
    # msgspec lets these two escape (a string that is not UTF-8; arrays nested past the
    # recursion limit in an ignored trailing element): report them like any malformed frame.
    return msgspec.DecodeError(f"malformed batch: {type(exc).__name__}: {exc}")
