"""bench/overheads.py: the variants and A/B pairs planned from the options, the order of
the turns, the table (B/A, within 3%, TLS against the reference's TLS), and one tiny real
run of every variant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import overheads
from bench.cli import build_parser
from bench.compare import Sizes, resolve_command


def parse(*argv: str) -> Any:
    return build_parser().parse_args(["overheads", *argv])


def test_plan_every_overhead_by_default() -> None:
    variants, pairs = overheads.plan(parse())
    by_name = {v.spec.name: v for v in variants}
    assert list(by_name) == [
        "plain", "metrics-off", "tls", "reference", "reference-tls", "shards2", "resumable",
    ]  # fmt: skip
    plain = by_name["plain"].spec.command
    assert "--metrics-port {metrics_port}" in plain and by_name["plain"].spec.workers == 2
    assert "--metrics-port" not in by_name["metrics-off"].spec.command
    assert by_name["tls"].spec.tls and by_name["tls"].spec.command.endswith(
        "--certfile {certfile} --keyfile {keyfile}"
    )
    assert by_name["reference-tls"].spec.tls and by_name["reference-tls"].spec.kind == "reference"
    assert by_name["shards2"].spec.command.endswith("--shards 2")
    # resume: the same server, the clients ask for it
    assert (
        by_name["resumable"].spec.command == plain and by_name["resumable"].query == "resumable=1"
    )
    tls = next(p for p in pairs if p.b == "tls")
    assert (tls.a, tls.against) == ("plain", ("reference", "reference-tls"))


def test_plan_skips_and_takes_the_shards_command() -> None:
    variants, pairs = overheads.plan(
        parse("--skip", "tls,metrics", "--shards-cmd", "python -m other --port {port}")
    )
    assert [v.spec.name for v in variants] == ["plain", "shards2", "resumable"]
    assert variants[1].spec.command == f"{sys.executable} -m other --port {{port}}"
    assert [p.b for p in pairs] == ["shards2", "resumable"]
    with pytest.raises(SystemExit):
        parse("--skip", "curve")
    assert parse("--rounds", "3").rounds == 3 and parse().rounds == 1
    with pytest.raises(SystemExit):
        parse("--rounds", "0")
    with pytest.raises(SystemExit, match="metrics-port"):
        overheads.plan(parse("--server-cmd", "mcp-tornado serve --port {port}"))


def test_schedule_rotates_and_reverses() -> None:
    order = overheads.schedule(["a", "b", "c"], 4)
    assert order == [["a", "b", "c"], ["a", "c", "b"], ["c", "a", "b"], ["c", "b", "a"]]
    assert [o[0] for o in order] != ["a"] * 4


def test_steps_are_compares_and_can_be_chosen() -> None:
    sz = Sizes()
    steps = overheads.steps(sz, None)
    assert [t for t, _, _ in steps] == list(overheads.TESTS)
    openloop = dict((t, p) for t, _, p in steps)["openloop"]
    assert openloop["rates"] == [5.0] and openloop["pairs"] == 1000  # one rate, no sweep
    assert [t for t, _, _ in overheads.steps(sz, {"connect"})] == ["connect"]


def run(variant: str, test: str, **metrics: Any) -> dict[str, Any]:
    cpu = metrics.pop("cpu_pct", None)
    return {
        "overhead_variant": variant,
        "compare_test": test,
        "metrics": metrics,
        "server": None if cpu is None else {"cpu_pct": cpu},
    }


def test_rows_ratio_within_three_percent_and_tls_against_the_reference() -> None:
    runs = [
        run("plain", "relay_w1", deliveries_per_s=50_000.0, cpu_pct=100.0),
        run("metrics-off", "relay_w1", deliveries_per_s=51_000.0, cpu_pct=100.0),
        run("plain", "openloop", latency_ms={"p99": 4.0}),
        run("metrics-off", "openloop", latency_ms={"p99": 3.8}),
        run("tls", "relay_w1", deliveries_per_s=35_000.0),
        run("reference", "relay_w1", deliveries_per_s=60_000.0),
        run("reference-tls", "relay_w1", deliveries_per_s=40_000.0),
    ]
    pairs = [
        overheads.AB("metrics", "metrics-off", "plain"),
        overheads.AB("tls", "plain", "tls", against=("reference", "reference-tls")),
        overheads.AB("shards", "plain", "shards2"),
    ]
    # two more rounds of metrics-off: the table shows the median (51,000 of 49,000..60,000)
    runs += [
        run("metrics-off", "relay_w1", deliveries_per_s=60_000.0, cpu_pct=100.0),
        run("metrics-off", "relay_w1", deliveries_per_s=49_000.0, cpu_pct=100.0),
    ]
    rows = {(r[0], r[1]): r for r in overheads.rows(runs, pairs)}
    assert rows["metrics", "relay w1 deliveries/s"] == [
        "metrics", "relay w1 deliveries/s", "51,000", "50,000", "0.980", "yes",
    ]  # fmt: skip
    # CPU per delivery: 1 core / 50,000/s = 20 us; more is worse
    cpu = rows["metrics", "relay w1 server CPU us/delivery"]
    assert cpu[2:5] == ["19.61", "20.00", "1.020"] and cpu[5] == "yes"
    p99 = rows["metrics", "open loop 1,000 x 5/s p99 ms"]
    assert p99[4:] == ["1.053", "NO"]  # 5% slower: lower is better, so over 3%
    # TLS: ours 0.70 of plain, the reference 0.667 of its plain: ours / its = 1.05
    tls = rows["tls", "relay w1 deliveries/s"]
    assert tls[4] == "0.700 (reference 0.667: ours / its 1.050)" and tls[5] == "yes"
    assert rows["shards", "-"][4] == "not measured: shards2 did not run"


def test_within_is_one_sided() -> None:
    assert overheads.within(0.97, higher=True) and not overheads.within(0.969, higher=True)
    assert overheads.within(1.5, higher=True)  # better is within
    assert overheads.within(1.03, higher=False) and not overheads.within(1.031, higher=False)
    assert overheads.within(None, higher=True) is None


def test_a_tiny_real_run_of_every_variant(tmp_path: Path) -> None:
    """Every variant started and measured (connect storm, smoke sizes); the shards command
    is this build's plain server until ``serve --shards`` exists, the reference serves TLS."""
    server = resolve_command(overheads.SERVER_CMD)
    if server is None:
        pytest.skip("mcp-tornado is not installed")
    proc = subprocess.run(
        [
            sys.executable, "-m", "bench", "overheads", "--quick", "--tests", "connect",
            "--shards-cmd", overheads.SERVER_CMD, "--out-dir", str(tmp_path), "--no-progress",
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "overheads.json").read_text())
    got = {r["overhead_variant"]: r for r in doc["runs"]}
    assert set(got) == {
        "plain", "metrics-off", "tls", "reference", "reference-tls", "shards2", "resumable",
    }  # fmt: skip
    for name, r in got.items():
        assert r["metrics"]["joined"] == 200 and r["metrics"]["errors"] == {}, name
    assert got["reference-tls"]["url"].startswith("wss://")
    assert got["resumable"]["url"].endswith("?resumable=1")
    md = (tmp_path / "overheads.md").read_text()
    assert "| TLS: plain (A) vs TLS (B) | connect storm joins/s |" in md
    assert "not measured" not in md and "failed to start" not in md
