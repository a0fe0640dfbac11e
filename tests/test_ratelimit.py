"""The token bucket: its verdicts at, just under and just over the rate and burst."""

from __future__ import annotations

from mcp_tornado import ratelimit
from mcp_tornado.ratelimit import TokenBucket


def test_bucket_allows_exactly_the_burst_then_warns_once() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [ratelimit.ALLOW] * 5
    assert bucket.take(0.0) == ratelimit.DROP_AND_WARN
    assert bucket.take(0.0) == ratelimit.DROP


def test_bucket_closes_after_burst_frames_over_the_allowance() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    for _ in range(5):
        bucket.take(0.0)
    verdicts = [bucket.take(0.0) for _ in range(5)]
    assert verdicts == [ratelimit.DROP_AND_WARN] + [ratelimit.DROP] * 3 + [ratelimit.CLOSE]


def test_bucket_refills_at_its_rate_and_caps_at_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    for _ in range(5):
        assert bucket.take(0.0) == ratelimit.ALLOW
    assert bucket.take(0.0) == ratelimit.DROP_AND_WARN  # 1 token in debt
    assert bucket.take(0.0) == ratelimit.DROP  # 2 in debt
    assert bucket.take(0.1) == ratelimit.DROP  # -2 + 1 = -1 tokens: still in debt, silent
    assert bucket.take(0.39) == ratelimit.DROP_AND_WARN  # -2 + 2.9 = 0.9: not enough, warned again
    assert bucket.take(0.61) == ratelimit.ALLOW  # -0.1 + 2.2 = 2.1 tokens
    assert [bucket.take(100.0) for _ in range(6)][-2:] == [ratelimit.ALLOW, ratelimit.DROP_AND_WARN]


def test_a_client_at_the_rate_is_never_limited() -> None:
    bucket = TokenBucket(rate=50, burst=200, now=0.0)
    assert all(bucket.take(i / 50) == ratelimit.ALLOW for i in range(10_000))


def test_a_client_just_over_the_rate_is_warned_then_closed_eventually() -> None:
    bucket = TokenBucket(rate=50, burst=200, now=0.0)
    verdicts = [bucket.take(i / 55) for i in range(20_000)]
    first_drop = verdicts.index(ratelimit.DROP_AND_WARN)
    assert all(v == ratelimit.ALLOW for v in verdicts[:first_drop])
    assert ratelimit.CLOSE in verdicts[first_drop:]


def test_take_many_charges_a_whole_read_of_frames() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert bucket.take_many(0.0, 5) == ratelimit.ALLOW  # exactly the burst
    assert bucket.take(0.0) == ratelimit.DROP_AND_WARN
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert bucket.take_many(0.0, 6) == ratelimit.DROP_AND_WARN  # one over: warned once
    assert bucket.take_many(0.0, 3) == ratelimit.DROP  # 4 over: still under the close
    assert bucket.take_many(0.0, 1) == ratelimit.CLOSE  # 5 = burst frames over: closed
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert bucket.take_many(0.0, 10_000) == ratelimit.CLOSE  # a flood in one read
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert bucket.take_many(0.0, 5) == ratelimit.ALLOW
    assert bucket.take_many(0.3, 3) == ratelimit.ALLOW  # refilled at its rate


def test_take_many_of_one_is_take() -> None:
    one, many = TokenBucket(rate=3, burst=4, now=0.0), TokenBucket(rate=3, burst=4, now=0.0)
    for i in range(40):
        now = i * 0.05
        assert one.take(now) == many.take_many(now, 1)
