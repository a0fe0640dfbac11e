"""Resume state, owned by the router: the tokens of resumable peers, and suspended slots.

A client that connects with ``?resumable=1`` is *resumable*: the router gives
it a token (``secrets.token_urlsafe``, single use) bound to its room and its
slot.  When its socket ends without a ``leave`` or a clean close (the worker
sends :class:`~mcp_tornado.wire.Lost`), or its worker dies, the router
*suspends* it instead of freeing its slot: the slot moves to a key of the
pseudo-worker :data:`SUSPENDED`, ``(SUSPENDED, n)``, so the room table keeps it
(and its partner) unchanged, and whatever the router says to it meanwhile
lands in the pseudo-worker's outbox.  The router hands that outbox to
:meth:`ResumeBook.hold` instead of sending it: messages for a suspended peer
are held in order, and the relay path (a partner lookup, a send) does not
change at all.

A :class:`~mcp_tornado.wire.Resume` with the token, from any worker, moves the
slot to the new ``(worker, peer)`` key (:meth:`ResumeBook.rebind`), spends the
token for a fresh one, and hands back what was held.  A suspension ends in a
free slot after ``grace`` seconds (:meth:`ResumeBook.due`) or when what is
held exceeds ``max_messages`` or ``max_bytes``.

Usage (the router's :class:`~mcp_tornado.router.broker.Router` does this)::

    book = ResumeBook(grace=10.0, max_messages=256, max_bytes=1 << 20)
    token = book.issue(key, "lobby", initiator=False)
    away = book.suspend(key, now)        # -> (SUSPENDED, n), or None: not resumable
    book.hold(msg)                       # False: over the bound, free the slot
    entry = book.claim(token, "lobby")   # None: used, forged, expired, other room
    token, held = book.rebind(entry, new_key)

It does no I/O and knows nothing of rooms beyond a name, so it is tested alone.
"""

from __future__ import annotations

import secrets
from collections import deque
from typing import Final

from mcp_tornado import wire
from mcp_tornado.router.rooms import PeerKey

# The pseudo-worker that suspended peers belong to.  A real worker's ZeroMQ
# routing id is its name (never starting with a NUL byte: ZeroMQ reserves those
# for ids it generates itself), so no worker can collide with it.
SUSPENDED: Final = b"\x00suspended"

TOKEN_BYTES: Final = 18  # 144 random bits, 24 URL-safe characters


class Resumable:
    """One resumable peer: its token, room and current key; when suspended, what is held."""

    __slots__ = ("deadline", "held", "held_bytes", "initiator", "key", "room", "token")

    def __init__(self, token: str, room: str, key: PeerKey, initiator: bool) -> None:
        self.token = token
        self.room = room
        self.key = key
        self.initiator = initiator  # the role it had at its join (given back at its resume)
        self.held: list[wire.ToWorker] = []
        self.held_bytes = 0
        self.deadline = 0.0  # while suspended: when the slot is freed

    @property
    def suspended(self) -> bool:
        return self.key[0] == SUSPENDED


class ResumeBook:
    """Every resumable peer of the router, by token and by key."""

    def __init__(self, grace: float, max_messages: int, max_bytes: int) -> None:
        self.grace = grace
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._by_token: dict[str, Resumable] = {}
        self._by_key: dict[PeerKey, Resumable] = {}
        # Suspensions in the order they end (the grace is the same for all).
        self._expiry: deque[tuple[float, PeerKey]] = deque()
        self._next_id = 0
        self.suspended_count = 0  # slots suspended now
        # Totals since start, for metrics: suspensions, resumes (a dropped worker
        # taking its own peers back included), refused resumes, and suspensions
        # that ended in a free slot after the grace or over the hold bound.
        self.suspensions = 0
        self.resumed = 0
        self.refused = 0
        self.expired = 0
        self.overflowed = 0

    @property
    def enabled(self) -> bool:
        return self.grace > 0

    def __len__(self) -> int:
        return len(self._by_key)

    def entry(self, key: PeerKey) -> Resumable | None:
        return self._by_key.get(key)

    # --- live peers --------------------------------------------------------------

    def issue(self, key: PeerKey, room: str, initiator: bool) -> str:
        """Make ``key`` resumable (again) with a fresh token; returns the token."""
        self.forget(key)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        entry = Resumable(token, room, key, initiator)
        self._by_token[token] = entry
        self._by_key[key] = entry
        return token

    def restore(self, key: PeerKey, room: str, token: str) -> None:
        """Relearn a live peer's token from its worker's re-registration (a restarted router)."""
        if not token or token in self._by_token:
            return
        self.forget(key)
        entry = Resumable(token, room, key, initiator=False)
        self._by_token[token] = entry
        self._by_key[key] = entry

    def forget(self, key: PeerKey) -> None:
        """``key`` is gone for good (left, freed, expired): its token is worthless from now on."""
        entry = self._by_key.pop(key, None)
        if entry is not None:
            del self._by_token[entry.token]
            if entry.suspended:
                self.suspended_count -= 1
                entry.held = []

    def set_initiator(self, key: PeerKey, initiator: bool) -> None:
        """Its role changed (its partner left, or a newcomer joined it, who makes the offer)."""
        entry = self._by_key.get(key)
        if entry is not None:
            entry.initiator = initiator

    # --- suspension ----------------------------------------------------------------

    def suspend(self, key: PeerKey, now: float) -> PeerKey | None:
        """Suspend ``key``: returns the key its slot moves to; ``None``: it is not resumable."""
        entry = self._by_key.get(key)
        if entry is None or entry.suspended or not self.enabled:
            return None
        self._next_id += 1
        away = (SUSPENDED, self._next_id)
        del self._by_key[key]
        entry.key = away
        entry.deadline = now + self.grace
        self._by_key[away] = entry
        self._expiry.append((entry.deadline, away))
        self.suspended_count += 1
        self.suspensions += 1
        return away

    def hold(self, msg: wire.ToWorker) -> PeerKey | None:
        """Keep ``msg`` (addressed to a suspended peer) for its resume.

        Returns the suspended key when this message takes it over a bound (the
        caller frees the slot); ``None`` otherwise (also when the slot is gone).
        """
        peer: int = getattr(msg, "peer", 0)
        entry = self._by_key.get((SUSPENDED, peer))
        if entry is None:
            return None
        entry.held.append(msg)
        if type(msg) is wire.Deliver:
            entry.held_bytes += len(msg.payload)
        if len(entry.held) > self.max_messages or entry.held_bytes > self.max_bytes:
            return entry.key
        return None

    def due(self, now: float) -> list[PeerKey]:
        """Suspended keys whose grace is over (each once)."""
        expired: list[PeerKey] = []
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, key = expiry.popleft()
            if key in self._by_key:  # not resumed nor freed meanwhile
                expired.append(key)
        return expired

    def next_deadline(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    # --- resuming ------------------------------------------------------------------

    def claim(self, token: str, room: str) -> Resumable | None:
        """The peer ``token`` resumes, if the token is live and for ``room``; ``None``: refuse."""
        entry = self._by_token.get(token)
        if entry is None or entry.room != room:
            return None
        return entry

    def rebind(
        self, entry: Resumable, key: PeerKey, fresh_token: bool = True
    ) -> tuple[str, list[wire.ToWorker]]:
        """``entry``'s slot now belongs to ``key``: its (fresh) token, and what was held, in order.

        ``fresh_token`` is False only when a worker that was dropped takes its own
        live peers back (they still hold their token).
        """
        if entry.suspended:
            self.suspended_count -= 1
            self.resumed += 1
        del self._by_key[entry.key]
        entry.key = key
        self._by_key[key] = entry
        if fresh_token:
            del self._by_token[entry.token]
            entry.token = secrets.token_urlsafe(TOKEN_BYTES)
            self._by_token[entry.token] = entry
        held, entry.held, entry.held_bytes = entry.held, [], 0
        return entry.token, held
