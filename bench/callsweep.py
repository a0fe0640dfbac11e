"""Call set-up capacity: the ``calls`` scenario at rising rates until the server falls behind.

Issue 17's figure "call setups/s with p99 set-up time <= 100 ms and zero failed calls":
one ``calls`` run (open loop, Poisson arrivals) per offered rate, rising in steps of
about sqrt(2), stopped at the first rate whose set-up p99 passes the limit or that
lost, refused or otherwise failed any call. The capacity is the highest offered rate
before that stop (0 when the first rate already failed; ``> X`` when the last rate
passed). ``bench compare`` runs it as its ``calls`` test::

    from bench import callsweep, drivers
    run = callsweep.sweep(drivers.Target(url, "mcp"), rates=[50, 71, 100], duration=4)
    run["metrics"]["capacity_calls_per_s"]

The result is one run dict (``"scenario": "calls_sweep"``) whose ``steps`` are the
``calls`` runs and whose ``metrics`` hold the capacity, why the sweep stopped, one
line per step and the set-up percentiles of the capacity step.
"""

from __future__ import annotations

import math
from typing import Any

from bench import drivers

#: Offered calls/s, sqrt(2) apart: 25 ... 2,263 (a call is two joins; the connect storm
#: tops out near 6,000 joins/s on the 2-core bench machine; a loaded machine has seen the
#: reference relay fail at 50/s).
RATES = [
    25.0, 35.0, 50.0, 71.0, 100.0, 141.0, 200.0, 283.0, 400.0, 566.0, 800.0, 1131.0, 1600.0,
    2263.0,
]  # fmt: skip
P99_LIMIT_MS = 100.0


def stop_reason(metrics: dict[str, Any], p99_limit_ms: float = P99_LIMIT_MS) -> str | None:
    """Why a ``calls`` step ends the sweep (``None``: it passed): any failed call, or a
    set-up p99 over the limit (or none at all: nothing was set up)."""
    if metrics.get("failed"):
        kinds = ", ".join(f"{k} {v}" for k, v in (metrics.get("failures") or {}).items())
        return f"{metrics['failed']} failed ({kinds})" if kinds else f"{metrics['failed']} failed"
    p99 = (metrics.get("setup_ms") or {}).get("p99")
    if p99 is None or (isinstance(p99, float) and math.isnan(p99)):
        return "no call set up"
    if p99 > p99_limit_ms:
        return f"p99 {p99:.1f} ms > {p99_limit_ms:g} ms"
    return None


def summarise(steps: list[dict[str, Any]], p99_limit_ms: float = P99_LIMIT_MS) -> dict[str, Any]:
    """The sweep's metrics from its ``calls`` runs, in the order they ran."""
    lines = []
    passed: dict[str, Any] | None = None
    reason = None
    for step in steps:
        m = step["metrics"]
        why = stop_reason(m, p99_limit_ms)
        setup = m.get("setup_ms") or {}
        lines.append(
            {
                "offered_calls_per_s": m.get("offered_calls_per_s"),
                "calls_per_s": m.get("calls_per_s"),
                "p50_ms": setup.get("p50"),
                "p90_ms": setup.get("p90"),
                "p99_ms": setup.get("p99"),
                "calls": m.get("calls"),
                "failed": m.get("failed"),
                "failures": m.get("failures") or {},
                "stop": why,
            }
        )
        if why is not None:
            reason = f"at {m.get('offered_calls_per_s'):g} calls/s: {why}"
            break
        passed = m
    metrics: dict[str, Any] = {
        "p99_limit_ms": p99_limit_ms,
        # the highest offered rate that passed; None: the first rate already failed
        "capacity_calls_per_s": passed["offered_calls_per_s"] if passed else None,
        "capacity_achieved_calls_per_s": passed["calls_per_s"] if passed else None,
        # False: the last rate passed too, the capacity is "more than" that
        "capacity_reached": reason is not None,
        "stop": reason,
        "sweep": lines,
        "setup_ms": (passed or {}).get("setup_ms") or {},
        # every failure of the steps that passed (none, by the rule) and the stop step's
        "failures": dict(lines[-1]["failures"]) if lines else {},
        "errors": {} if passed is None else passed.get("errors") or {},
    }
    return metrics


def capacity_text(run: dict[str, Any] | None) -> str:
    """The capacity for a table: ``400``, ``> 2,263`` (never stopped), ``< 50`` (the first
    rate failed) or ``-``."""
    m = (run or {}).get("metrics") or {}
    lines = m.get("sweep") or []
    if not lines:
        return "-"
    cap = m.get("capacity_calls_per_s")
    if cap is None:
        return f"< {lines[0]['offered_calls_per_s']:,.0f}"
    return ("" if m.get("capacity_reached") else "> ") + f"{cap:,.0f}"


def sweep(
    target: drivers.Target,
    rates: list[float] | None = None,
    duration: float = 4.0,
    p99_limit_ms: float = P99_LIMIT_MS,
    progress: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """``calls`` at each of ``rates`` (rising) for ``duration`` s until :func:`stop_reason`
    says stop; ``params`` go to every ``calls`` run (procs, call_timeout, arrivals ...)."""
    rates = sorted(rates or RATES)
    steps: list[dict[str, Any]] = []
    for rate in rates:
        run = drivers.run(
            "calls", target, progress=progress, rate=rate, duration=duration, **params
        )
        steps.append(run)
        if stop_reason(run["metrics"], p99_limit_ms) is not None:
            break
    metrics = summarise(steps, p99_limit_ms)
    shown = next(
        (s for s in reversed(steps) if stop_reason(s["metrics"], p99_limit_ms) is None),
        steps[-1],
    )
    return {
        "scenario": "calls_sweep",
        "label": target.label,
        "url": target.url,
        "params": {"rates": rates, "duration": duration, "p99_limit_ms": p99_limit_ms, **params},
        "started_at": steps[0].get("started_at"),
        "metrics": metrics,
        "steps": steps,
        # CPU and the set-up CDF of the capacity step (else of the one that stopped it)
        "server": shown.get("server"),
        "client": shown.get("client"),
        "cdf": shown.get("cdf", []),
        "failures": [f for s in steps for f in s.get("failures") or []],
        "wall_s": sum(float(s.get("wall_s") or 0.0) for s in steps),
    }
