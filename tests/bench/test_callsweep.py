"""bench/callsweep.py: the stop rule, the capacity it reports, Poisson arrivals, and tiny
real sweeps against the reference relay and ``mcp-tornado serve --workers 2``."""

from __future__ import annotations

import itertools
import random
import statistics
from typing import Any

import pytest

from bench import callsweep, drivers
from bench.procmon import SpawnedServer
from bench.scenarios import call_arrivals


def step(rate: float, p99: float | None, failures: dict[str, int] | None = None) -> dict[str, Any]:
    """A ``calls`` run as drivers returns it, reduced to what the sweep reads."""
    failures = failures or {}
    setup = {} if p99 is None else {"p50": p99 / 4, "p90": p99 / 2, "p99": p99}
    return {
        "metrics": {
            "offered_calls_per_s": rate,
            "calls_per_s": rate * 0.95,
            "calls": int(rate * 4),
            "failed": sum(failures.values()),
            "failures": failures,
            "setup_ms": setup,
            "errors": {},
        }
    }


def test_stop_reason_is_a_failed_call_or_p99_over_the_limit() -> None:
    assert callsweep.stop_reason(step(100, 99.9)["metrics"]) is None
    assert callsweep.stop_reason(step(100, 100.0)["metrics"]) is None  # "<= 100 ms" passes
    assert callsweep.stop_reason(step(100, 100.1)["metrics"]) == "p99 100.1 ms > 100 ms"
    assert (
        callsweep.stop_reason(step(100, 40.0)["metrics"], p99_limit_ms=30) == "p99 40.0 ms > 30 ms"
    )
    # one refused call stops it even with a fast p99
    why = callsweep.stop_reason(step(100, 5.0, {"connect_refused": 1})["metrics"])
    assert why == "1 failed (connect_refused 1)"
    assert callsweep.stop_reason(step(100, None)["metrics"]) == "no call set up"
    assert callsweep.stop_reason(step(100, float("nan"))["metrics"]) == "no call set up"


def test_capacity_is_the_last_rate_before_the_stop() -> None:
    m = callsweep.summarise([step(50, 10), step(71, 20), step(100, 140), step(141, 300)])
    assert m["capacity_calls_per_s"] == 71 and m["capacity_reached"] is True
    assert m["capacity_achieved_calls_per_s"] == pytest.approx(71 * 0.95)
    assert m["stop"] == "at 100 calls/s: p99 140.0 ms > 100 ms"
    assert [line["offered_calls_per_s"] for line in m["sweep"]] == [50, 71, 100]  # not past it
    assert m["setup_ms"]["p99"] == 20  # the capacity step's percentiles
    assert callsweep.capacity_text({"metrics": m}) == "71"


def test_a_failure_kind_is_reported_with_the_stop() -> None:
    m = callsweep.summarise([step(50, 10), step(71, 12, {"lost_message": 2, "timeout": 1})])
    assert m["capacity_calls_per_s"] == 50
    assert m["failures"] == {"lost_message": 2, "timeout": 1}
    assert m["stop"] == "at 71 calls/s: 3 failed (lost_message 2, timeout 1)"


def test_never_stopped_and_failed_at_once_are_bounds() -> None:
    never = callsweep.summarise([step(50, 10), step(71, 12)])
    assert never["capacity_calls_per_s"] == 71 and never["capacity_reached"] is False
    assert callsweep.capacity_text({"metrics": never}) == "> 71"
    first = callsweep.summarise([step(50, 500)])
    assert first["capacity_calls_per_s"] is None and first["capacity_reached"] is True
    assert callsweep.capacity_text({"metrics": first}) == "< 50"
    assert callsweep.capacity_text(None) == "-"


def test_rates_rise_in_sqrt2_steps() -> None:
    rates = callsweep.RATES
    assert rates == sorted(rates)
    for a, b in itertools.pairwise(rates):
        assert b / a == pytest.approx(2**0.5, rel=0.02)


def test_poisson_arrivals_average_the_interval_with_random_gaps() -> None:
    starts = call_arrivals("poisson", 4000, 10_000_000, random.Random(1))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert starts[0] == 0 and all(g >= 0 for g in gaps)
    assert statistics.mean(gaps) == pytest.approx(10_000_000, rel=0.05)
    # exponential gaps: standard deviation about the mean (even ones have none)
    assert statistics.stdev(gaps) == pytest.approx(10_000_000, rel=0.1)
    assert call_arrivals("even", 3, 5, random.Random(1)) == [0, 5, 10]
    with pytest.raises(ValueError, match="arrivals"):
        call_arrivals("bursty", 3, 5, random.Random(1))


def test_a_real_sweep_against_the_reference(reference_relay: SpawnedServer) -> None:
    target = drivers.Target(reference_relay.url, "ref", reference_relay.pid)
    # a generous limit: the machine is shared; the rule itself is tested above
    run = callsweep.sweep(
        target, rates=[20, 10], duration=0.5, p99_limit_ms=5000, progress=False, procs=2
    )
    m = run["metrics"]
    assert run["scenario"] == "calls_sweep" and len(run["steps"]) == 2
    assert [line["offered_calls_per_s"] for line in m["sweep"]] == [10, 20]
    assert m["capacity_calls_per_s"] == 20 and m["capacity_reached"] is False
    assert m["stop"] is None and all(line["failed"] == 0 for line in m["sweep"])
    assert m["setup_ms"]["count"] == 10 and run["cdf"]
    # a limit no call meets stops at the first rate
    run = callsweep.sweep(target, rates=[10, 20], duration=0.5, p99_limit_ms=1e-6, progress=False)
    assert len(run["steps"]) == 1 and run["metrics"]["capacity_calls_per_s"] is None
    assert run["metrics"]["stop"].startswith("at 10 calls/s: p99 ")


def test_a_real_sweep_against_two_workers(mcp_server: SpawnedServer) -> None:
    target = drivers.Target(mcp_server.url, "mcp", mcp_server.pid)
    run = callsweep.sweep(target, rates=[10, 20], duration=0.5, p99_limit_ms=5000, progress=False)
    m = run["metrics"]
    assert m["capacity_calls_per_s"] == 20, m["sweep"]
    assert sum(line["calls"] for line in m["sweep"]) == 15
    assert run["server"] is not None and run["server"]["cpu_pct"] >= 0
