"""Which router shard owns a room: a stable hash into 1,024 slots, dealt to the shards in turn.

Usage::

    shards = ShardMap(2)                  # two router shards
    shards.shard_of("lobby")              # 0 or 1, the same in every process
    shards.fingerprint                    # "2x1024:..."; a router refuses a worker whose differs
    ShardMap(2, index=1).owns("lobby")    # the router of shard 1: is this room mine?

A room's slot is the first bytes of the BLAKE2b digest of its UTF-8 name, modulo
:data:`SLOTS` (never Python's ``hash``, which changes with ``PYTHONHASHSEED``);
slot ``s`` belongs to shard ``s % count``.  Both peers of a room therefore meet
at one shard, and every worker, started anywhere, sends a room to the same one.

The map never changes while a deployment runs: a dead shard's rooms wait for
it (joins to them fail with 1013) instead of moving to another shard, where a
room could end up with a peer on each side.  Resharding is a drain and a
restart with the new ``--router`` list (README, "Deploying on several hosts");
:attr:`ShardMap.fingerprint` is what lets a router refuse a worker that kept
the old one.
"""

from __future__ import annotations

import hashlib
from typing import Final

SLOTS: Final = 1024  # fixed: changing it moves rooms, like a new shard count


def slot_of(room: str) -> int:
    """The slot of ``room``: stable across processes, hosts and hash seeds."""
    digest = hashlib.blake2b(room.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SLOTS


class ShardMap:
    """The slots of :data:`SLOTS` dealt round-robin to ``count`` shards.

    ``index``: the shard this process is (a router); ``-1`` for a worker,
    which holds a link to every shard.
    """

    __slots__ = ("count", "fingerprint", "index")

    def __init__(self, count: int = 1, index: int = -1) -> None:
        if count < 1:
            raise ValueError(f"--shards must be at least 1, not {count}")
        if not -1 <= index < count:
            raise ValueError(f"--shard must be from 0 to {count - 1} (of --shards {count})")
        self.count = count
        self.index = index
        owners = ",".join(str(slot % count) for slot in range(SLOTS)).encode()
        digest = hashlib.blake2b(owners, digest_size=6).hexdigest()
        # What a worker's Hello carries and a router compares with its own.
        self.fingerprint = f"{count}x{SLOTS}:{digest}"

    def shard_of(self, room: str) -> int:
        return slot_of(room) % self.count

    def owns(self, room: str) -> bool:
        """Whether this shard (``index``) owns ``room``; any shard owns all when there is one."""
        return self.count == 1 or slot_of(room) % self.count == self.index

    def describe(self) -> str:
        """The map for a log line or ``mcp-tornado status``."""
        where = f"shard {self.index} of {self.count}" if self.index >= 0 else f"{self.count} shards"
        return f"{where}, map {self.fingerprint}"
