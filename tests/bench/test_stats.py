"""Percentile maths, CDF down-sampling, threshold crossing, loss/reorder detection."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from bench.scenarios import MEASURE_RE, measure_message
from bench.stats import (
    SeqTracker,
    cdf_points,
    crossing_point,
    merge_counts,
    pct_key,
    percentile,
    summarize,
)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000])
@pytest.mark.parametrize("pct", [0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0])
def test_percentile_matches_numpy_linear(n: int, pct: float) -> None:
    rng = random.Random(n)
    values = sorted(rng.expovariate(1.0) for _ in range(n))
    expected = float(np.percentile(values, pct, method="linear"))
    assert percentile(values, pct) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_percentile_edges() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([7.0], 99.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_keys_and_values() -> None:
    values = [float(v) for v in range(1, 1001)]
    random.Random(1).shuffle(values)
    s = summarize(values)
    assert s["count"] == 1000
    assert s["min"] == 1.0 and s["max"] == 1000.0
    assert s["mean"] == pytest.approx(500.5)
    assert s["p50"] == pytest.approx(500.5)
    assert s["p99"] == pytest.approx(990.01)
    assert s["p99.9"] == pytest.approx(999.001)
    assert [pct_key(p) for p in (50, 99.9)] == ["p50", "p99.9"]


def test_summarize_empty_is_nan_not_error() -> None:
    s = summarize([])
    assert s["count"] == 0
    assert math.isnan(float(s["p99"]))


def test_cdf_points_small_keeps_everything() -> None:
    pts = cdf_points([3.0, 1.0, 2.0])
    assert pts == [(1.0, 1 / 3), (2.0, 2 / 3), (3.0, 1.0)]


def test_cdf_points_large_is_bounded_monotone_and_keeps_tail() -> None:
    values = [float(i) for i in range(100_000)]
    pts = cdf_points(values, max_points=300)
    assert len(pts) <= 300
    xs = [p[0] for p in pts]
    fs = [p[1] for p in pts]
    assert xs == sorted(xs) and fs == sorted(fs)
    assert pts[-1] == (99_999.0, 1.0)
    # the tail has resolution: some point between p99.9 and the max
    assert any(0.999 <= f < 1.0 for f in fs)


def test_crossing_point_interpolates() -> None:
    assert crossing_point([1000, 2000, 4000], [10.0, 30.0, 90.0], 50.0) == pytest.approx(
        2000 + 2000 * (20 / 60)
    )
    assert crossing_point([1000, 2000], [10.0, 20.0], 50.0) is None
    assert crossing_point([1000, 2000], [60.0, 70.0], 50.0) == 1000.0
    with pytest.raises(ValueError):
        crossing_point([1], [1.0, 2.0], 1.0)


def test_seq_tracker_in_order() -> None:
    t = SeqTracker()
    for i in range(100):
        t.observe(i)
    assert (t.received, t.reordered, t.duplicates, t.gaps) == (100, 0, 0, 0)
    assert t.lost(100) == 0
    assert t.lost(103) == 3  # the last three never came


def test_seq_tracker_loss_reorder_duplicate() -> None:
    t = SeqTracker()
    for seq in [0, 1, 3, 4, 2, 4, 7]:
        t.observe(seq)
    # 2 arrived late (reordered), 4 twice (duplicate), 5 and 6 never
    assert t.reordered == 1
    assert t.duplicates == 1
    assert t.gaps == 2
    assert t.lost(8) == 2
    assert t.lost(10) == 4


def test_measure_regex_reads_compact_and_reserialised_json() -> None:
    raw = measure_message(42, 123456789)
    m = MEASURE_RE.search(raw)
    assert m is not None and (int(m.group(1)), int(m.group(2))) == (42, 123456789)
    # A server that re-serialises JSON (the Channels baseline) adds spaces.
    spaced = b'{"type": "candidate", "seq": 42, "t": 123456789, "candidate": "x"}'
    m = MEASURE_RE.search(spaced)
    assert m is not None and (int(m.group(1)), int(m.group(2))) == (42, 123456789)
    assert MEASURE_RE.search(b'{"type":"joined","room":"r","peers":1}') is None


def test_merge_counts() -> None:
    assert merge_counts({"a": 1}, {"a": 2, "b": 3}) == {"a": 3, "b": 3}
