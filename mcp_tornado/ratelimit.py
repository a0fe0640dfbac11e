"""Per-connection rate limiting (``--rate-limit``, ``--rate-burst``): a token bucket, its verdicts.

The worker asks its connection's bucket once per frame, before the one decode: per
message and per ping as each arrives, and for fragments and pongs once per read.
"""

from __future__ import annotations

from typing import Final

ALLOW: Final = 0  # take the frame
DROP_AND_WARN: Final = 1  # drop it and send error ``rate_limited`` (first excess frame)
DROP: Final = 2  # drop it silently (the client was already warned)
CLOSE: Final = 3  # the client kept going: ``rate_limited`` and close 4429


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one token per frame.

    A frame that finds no token is dropped and the bucket goes into debt; the
    first such frame is answered with ``rate_limited``.  A client that sends
    ``burst`` frames beyond its allowance is closed.  Debt is repaid at
    ``rate``, so a client that slows down recovers.  A few float operations
    per frame; ``now`` comes from the caller's clock (seconds).
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> int:
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        self.tokens = tokens - 1.0
        if tokens >= 1.0:
            return ALLOW
        if self.tokens < 1.0 - self.burst:
            return CLOSE
        return DROP_AND_WARN if tokens >= 0.0 else DROP

    def take_many(self, now: float, count: int) -> int:
        """:meth:`take` for ``count`` frames at once (fragments and pongs, counted per read).

        ``ALLOW`` if there were tokens for all of them; else the verdict of the last.
        """
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        self.tokens = tokens - count
        if self.tokens >= 0.0:
            return ALLOW
        if self.tokens < 1.0 - self.burst:
            return CLOSE
        return DROP_AND_WARN if tokens >= 0.0 else DROP
