"""Pure statistics helpers: percentiles, latency summaries, loss/reorder tracking.

Nothing here does I/O, so it is what the unit tests check most closely.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Percentiles reported for every latency distribution.
REPORTED_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Return the ``pct`` percentile of already sorted values.

    Uses linear interpolation between closest ranks (the same definition as
    ``numpy.percentile(..., method="linear")``), so ``percentile(v, 0)`` is the
    minimum and ``percentile(v, 100)`` the maximum. Returns ``nan`` for no values.
    """
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile out of range: {pct}")
    n = len(sorted_values)
    if n == 0:
        return math.nan
    if n == 1:
        return float(sorted_values[0])
    rank = (n - 1) * pct / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    return float(sorted_values[lo]) + (float(sorted_values[hi]) - float(sorted_values[lo])) * frac


def pct_key(pct: float) -> str:
    """JSON key for a percentile: 50 -> 'p50', 99.9 -> 'p99.9'."""
    text = f"{pct:g}"
    return f"p{text}"


def summarize(values: Iterable[float]) -> dict[str, float | int]:
    """Summary of a latency sample: count, mean, min, max and the reported percentiles.

    Values are in whatever unit the caller uses (milliseconds in this package).
    """
    data = sorted(values)
    out: dict[str, float | int] = {"count": len(data)}
    if not data:
        for pct in REPORTED_PERCENTILES:
            out[pct_key(pct)] = math.nan
        out.update({"mean": math.nan, "min": math.nan, "max": math.nan})
        return out
    out["mean"] = math.fsum(data) / len(data)
    out["min"] = float(data[0])
    for pct in REPORTED_PERCENTILES:
        out[pct_key(pct)] = percentile(data, pct)
    out["max"] = float(data[-1])
    return out


def cdf_points(values: Iterable[float], max_points: int = 400) -> list[tuple[float, float]]:
    """Down-sample a distribution to at most ``max_points`` (value, cumulative fraction) pairs.

    Points are spread evenly in ``-log10(1 - fraction)`` so the tail (p99, p99.9, max)
    keeps its resolution; the last point is always the maximum at fraction 1.0.
    """
    data = sorted(values)
    n = len(data)
    if n == 0:
        return []
    if n <= max_points:
        return [(float(v), (i + 1) / n) for i, v in enumerate(data)]
    top = math.log10(n)  # fraction 1 - 1/n
    points: list[tuple[float, float]] = []
    last_index = -1
    for k in range(max_points - 1):
        frac = 1.0 - 10.0 ** (-top * k / (max_points - 2))
        index = min(n - 1, max(0, math.ceil(frac * n) - 1))
        if index <= last_index:
            continue
        last_index = index
        points.append((float(data[index]), (index + 1) / n))
    if last_index != n - 1:
        points.append((float(data[-1]), 1.0))
    return points


def crossing_point(xs: Sequence[float], ys: Sequence[float], threshold: float) -> float | None:
    """First x where the piecewise-linear curve (xs, ys) reaches ``threshold``.

    ``xs`` must be increasing. Returns ``None`` when ``ys`` never reaches the
    threshold, and ``xs[0]`` when the first point already does.
    """
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if math.isnan(y) or y < threshold:
            continue
        if i == 0:
            return float(x)
        x0, y0 = xs[i - 1], ys[i - 1]
        if math.isnan(y0) or y == y0:
            return float(x)
        return float(x0 + (x - x0) * (threshold - y0) / (y - y0))
    return None


@dataclass
class SeqTracker:
    """Checks one ordered stream of sequence numbers (0, 1, 2, ...).

    ``observe`` is called for every received sequence number. A number larger
    than the expected one means the numbers in between are missing (counted as
    a gap, and later as ``lost`` unless they turn up late); a number smaller than
    the expected one arrived out of order (``reordered``) or twice (``duplicates``).
    ``finish(sent)`` settles the final counts once the sender says how many it sent.
    """

    expected: int = 0
    received: int = 0
    reordered: int = 0
    duplicates: int = 0
    _missing: set[int] = field(default_factory=set)
    _max_seen: int = -1

    def observe(self, seq: int) -> None:
        self.received += 1
        if seq == self.expected:
            self.expected = seq + 1
        elif seq > self.expected:
            self._missing.update(range(self.expected, seq))
            self.expected = seq + 1
        elif seq in self._missing:
            self._missing.discard(seq)
            self.reordered += 1
        else:
            self.duplicates += 1
        if seq > self._max_seen:
            self._max_seen = seq

    @property
    def gaps(self) -> int:
        """Numbers skipped so far that have not turned up (yet)."""
        return len(self._missing)

    def lost(self, sent: int) -> int:
        """Messages never received out of ``sent`` (0 .. sent-1)."""
        tail = max(0, sent - self.expected)
        return len(self._missing) + tail


def merge_counts(target: dict[str, int], extra: dict[str, int]) -> dict[str, int]:
    """Add the integer counters of ``extra`` into ``target`` (returned for chaining)."""
    for key, value in extra.items():
        target[key] = target.get(key, 0) + value
    return target
