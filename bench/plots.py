"""PNG plots (matplotlib, Agg backend): latency CDF, scaling with peers, side-by-side comparison."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _name(run: dict[str, Any]) -> str:
    p = run.get("params", {})
    extra = f" w{p['window']}" if "window" in p else ""
    return f"{run.get('label')} {run.get('scenario')} {p.get('peers', '')}p{extra}"


def latency_cdf(
    runs: list[dict[str, Any]],
    path: str | Path,
    title: str | None = None,
    xlabel: str = "latency (ms, log scale)",
) -> Path | None:
    """Round-trip (or connect) latency CDF of every run that has one.

    Log x axis; the y axis is spread as -log10(1-F) so p99 and p99.9 are readable.
    """
    curves = [(r, r.get("cdf") or []) for r in runs]
    curves = [(r, c) for r, c in curves if c]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for run, cdf in curves:
        xs = [max(1e-3, float(x)) for x, _ in cdf]
        ys = [min(5.0, -math.log10(max(1e-5, 1.0 - float(f)))) for _, f in cdf]
        ax.plot(xs, ys, label=_name(run), linewidth=1.5)
    ax.set_xscale("log")
    ticks = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    ax.set_yticks(ticks)
    ax.set_yticklabels(["p0", "p90", "p99", "p99.9", "p99.99", "max"])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("percentile")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title or "Latency CDF")
    ax.legend(fontsize=8)
    return _save(fig, path)


def scaling(runs: list[dict[str, Any]], path: str | Path, title: str | None = None) -> Path | None:
    """Throughput (left axis) and p99 (right axis) against peers, one line per label."""
    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for run in runs:
        m = run.get("metrics", {})
        if "deliveries_per_s" not in m:
            continue
        peers = int(run.get("params", {}).get("peers", 0))
        p99 = float((m.get("latency_ms") or {}).get("p99") or math.nan)
        series[str(run.get("label"))].append((peers, float(m["deliveries_per_s"]), p99))
    if not series:
        return None
    fig, ax1 = plt.subplots(figsize=(8, 5))
    ax2 = ax1.twinx()
    for i, (label, points) in enumerate(sorted(series.items())):
        points.sort()
        color = f"C{i}"
        xs = [p[0] for p in points]
        ax1.plot(xs, [p[1] for p in points], "o-", color=color, label=f"{label} deliveries/s")
        ax2.plot(xs, [p[2] for p in points], "s--", color=color, label=f"{label} p99 ms")
    ax1.set_xlabel("peers")
    ax1.set_ylabel("one-way deliveries/s (solid)")
    ax2.set_ylabel("p99 round trip ms (dashed)")
    ax2.set_yscale("log")
    ax1.grid(True, alpha=0.3)
    handles = ax1.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    ax1.legend(handles[0] + handles2[0], handles[1] + handles2[1], fontsize=8, loc="upper left")
    ax1.set_title(title or "Throughput and p99 vs peers")
    return _save(fig, path)


def comparison(
    runs: list[dict[str, Any]], path: str | Path, title: str | None = None
) -> Path | None:
    """Side-by-side bars per run: deliveries/s and p99 (several URLs or worker counts)."""
    rows = [
        (
            _name(r),
            float(r["metrics"]["deliveries_per_s"]),
            float((r["metrics"].get("latency_ms") or {}).get("p99") or math.nan),
        )
        for r in runs
        if "deliveries_per_s" in r.get("metrics", {})
    ]
    if not rows:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    names = [r[0] for r in rows]
    pos = list(range(len(rows)))
    ax1.bar(pos, [r[1] for r in rows], color=[f"C{i}" for i in pos])
    ax1.set_xticks(pos)
    ax1.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax1.set_ylabel("one-way deliveries/s")
    ax1.set_yscale("log")
    ax1.grid(True, axis="y", alpha=0.3)
    ax2.bar(pos, [r[2] for r in rows], color=[f"C{i}" for i in pos])
    ax2.set_xticks(pos)
    ax2.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax2.set_ylabel("p99 round trip (ms)")
    ax2.set_yscale("log")
    ax2.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title or "Comparison")
    return _save(fig, path)


def sweep(runs: list[dict[str, Any]], path: str | Path, threshold_ms: float = 50.0) -> Path | None:
    """Open-loop p99 against offered rate, one line per run, with the threshold line."""
    lines = [(r, r["metrics"].get("sweep") or []) for r in runs if r.get("scenario") == "openloop"]
    lines = [(r, s) for r, s in lines if s]
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for run, points in lines:
        ax.plot(
            [p["offered_msgs_per_s"] for p in points],
            [p["p99_ms"] if p["p99_ms"] is not None else math.nan for p in points],
            "o-",
            label=_name(run),
        )
    _sweep_axes(
        ax,
        threshold_ms,
        "offered messages/s (all pairs)",
        "p99 round trip ms",
        "Open loop: p99 vs offered rate",
    )
    return _save(fig, path)


def _sweep_axes(ax: Any, threshold_ms: float, xlabel: str, ylabel: str, title: str) -> None:
    """A sweep's axes: p99 against the offered rate, both logarithmic, with the limit."""
    ax.axhline(threshold_ms, color="red", linestyle=":", label=f"{threshold_ms:g} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)


def calls_sweep(
    runs: list[dict[str, Any]], path: str | Path, threshold_ms: float = 100.0
) -> Path | None:
    """Call set-up p99 against offered calls/s, one line per call sweep, with the limit;
    a step with failed calls is a red cross."""
    lines = [
        (r, r["metrics"].get("sweep") or []) for r in runs if r.get("scenario") == "calls_sweep"
    ]
    lines = [(r, s) for r, s in lines if s]
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for run, points in lines:
        xs = [p["offered_calls_per_s"] for p in points]
        ys = [p["p99_ms"] if p["p99_ms"] is not None else math.nan for p in points]
        ax.plot(xs, ys, "o-", label=str(run.get("label")))
        bad = [(x, y) for x, y, p in zip(xs, ys, points, strict=True) if p.get("failed")]
        if bad:
            ax.plot(*zip(*bad, strict=True), "x", color="red", markersize=10)
    _sweep_axes(
        ax,
        threshold_ms,
        "offered calls/s (Poisson arrivals)",
        "p99 call set-up ms",
        "Call set-up: p99 vs offered calls/s (x: calls failed)",
    )
    return _save(fig, path)


#: The distribution each scenario's ``cdf`` holds: (file, title, x axis label).
CDF_KINDS = {
    "relay": ("latency_cdf.png", "Round-trip latency CDF", "round trip (ms, log scale)"),
    "openloop": ("latency_cdf.png", "Round-trip latency CDF", "round trip (ms, log scale)"),
    "connect": ("connect_cdf.png", "Connect time CDF", "connect to open (ms, log scale)"),
    "idle": ("connect_cdf.png", "Connect time CDF", "connect to open (ms, log scale)"),
    "churn": ("churn_cycle_cdf.png", "Churn cycle time CDF", "join to exchanged (ms, log scale)"),
    "calls": (
        "calls_setup_cdf.png",
        "Call set-up time CDF",
        "A's connect to B has the answer (ms, log)",
    ),
    "calls_sweep": (
        "calls_setup_cdf.png",
        "Call set-up time CDF",
        "A's connect to B has the answer (ms, log)",
    ),
}


def all_plots_explained(
    runs: list[dict[str, Any]], out_dir: str | Path, prefix: str = ""
) -> tuple[list[Path], list[str]]:
    """Every plot the runs allow, in ``out_dir`` (created), and for each scenario that got
    none, why not (one line each)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    by_file: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        kind = CDF_KINDS.get(str(run.get("scenario")))
        if kind is not None:
            by_file[kind].append(run)
    for (name, title, xlabel), group in by_file.items():
        path = latency_cdf(group, out_dir / f"{prefix}{name}", title, xlabel)
        if path is not None:
            made.append(path)
    made += [p for p in all_plots(runs, out_dir, prefix, cdf=False)]
    why_not = []
    for scenario in sorted({str(r.get("scenario")) for r in runs}):
        if not any(r.get("cdf") for r in runs if r.get("scenario") == scenario):
            why_not.append(
                f"for {scenario}: no run measured a time to plot "
                "(nothing was set up; see the errors above)"
            )
    return sorted(set(made)), why_not


def all_plots(
    runs: list[dict[str, Any]], out_dir: str | Path, prefix: str = "", cdf: bool = True
) -> list[Path]:
    out_dir = Path(out_dir)
    made = [
        latency_cdf(runs, out_dir / f"{prefix}latency_cdf.png") if cdf else None,
        scaling(runs, out_dir / f"{prefix}scaling.png"),
        comparison(runs, out_dir / f"{prefix}comparison.png"),
        sweep(runs, out_dir / f"{prefix}openloop_sweep.png"),
        calls_sweep(runs, out_dir / f"{prefix}calls_sweep.png"),
    ]
    return [p for p in made if p is not None]


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
