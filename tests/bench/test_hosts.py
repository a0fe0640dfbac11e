"""``python -m bench hosts`` (bench/hosts.py): a tiny run on emulated hosts, and its clean-up.

Root only (network namespaces, see bench/netns.py); skipped elsewhere with the
reason.  The run is ``--quick --rounds 1``: every set-up once, small sizes.
Each test checks that nothing of the run is left afterwards: no namespace or
link of its network, no process that still names its output folder, no keys.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench import hosts
from bench.netns import leftovers, why_unavailable

REPO = Path(__file__).resolve().parents[2]
problem = why_unavailable()
pytestmark = pytest.mark.skipif(problem is not None, reason=problem or "")


def bench_hosts(out_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench", "hosts", "--out-dir", str(out_dir), *extra]


def assert_nothing_left(stdout: str) -> None:
    """No namespace, link or process of the run whose first line is in ``stdout``; no keys."""
    found = re.search(r"bench hosts: network ([0-9a-f]{6}), work folder (\S+)", stdout)
    assert found, stdout
    network, work = found.groups()
    left = leftovers({network}, prefix=hosts.PREFIX, link_prefix=hosts.LINK_PREFIX)
    assert not left, f"namespaces or links left: {left}"
    running = []  # every server and client names a file in the work folder
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any(work in part for part in process.info["cmdline"] or []):
            running.append(process.info)
    assert not running, f"processes left: {running}"
    assert not Path(work).exists(), "the keys and sockets were not removed"


def test_a_quick_run_measures_every_figure_of_every_set_up_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "out"
    done = subprocess.run(
        bench_hosts(out_dir, "--quick", "--rounds", "1", "--no-progress"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_nothing_left(done.stdout)
    result: dict[str, Any] = json.loads((out_dir / "hosts.json").read_text())
    assert result["order"] == ["hosts", "plain", "one-host", "shards2"]
    for setup in hosts.SETUPS:
        for figure in hosts.FIGURES:
            value = result["means"][setup].get(figure.name)
            assert isinstance(value, float) and value > 0, (setup, figure.name, value)
    for name, *_ in hosts.RATIOS:
        assert all(isinstance(v, float) for v in result["ratios"][name].values()), name
    assert all(isinstance(v, float) for v in result["capacity"].values()), result["capacity"]
    assert len(result["runs"]) == len(hosts.SETUPS) * 4
    for run in result["runs"]:
        metrics = run["metrics"]
        clean = {"lost": 0, "reordered": 0, "duplicates": 0} if run["scenario"] != "calls" else {}
        assert metrics == metrics | clean | ({"failed": 0} if run["scenario"] == "calls" else {})
        if run["label"] != "one-host":  # every pair split across the two worker hosts
            assert run["params"]["url_b"] != run["url"], run["params"]
    # The pairs really crossed the router link between the two worker hosts.
    relay = next(r for r in result["runs"] if r["label"] == "hosts" and r["test"] == "relay_w1")
    assert relay["url"].startswith("ws://10.204.0.2:") and "10.204.0.3" in relay["params"]["url_b"]
    table = (out_dir / "hosts.md").read_text()
    assert "| relay w8 deliveries/s (/s) |" in table and "CURVE / plain" in table
    assert "Lost: 0, reordered: 0, failed calls: 0." in table


def test_a_server_that_cannot_start_ends_the_run_with_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "out"
    environment = {**os.environ, "MCP_TORNADO_HEARTBEAT_INTERVAL": "-1"}  # every server refuses
    done = subprocess.run(
        bench_hosts(out_dir, "--quick", "--rounds", "1"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=environment,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "router0 exited 2 while starting" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert_nothing_left(done.stdout)


def test_sigterm_in_the_middle_of_a_turn_removes_everything(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    run = subprocess.Popen(
        bench_hosts(out_dir, "--quick", "--rounds", "1"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Once the first turn's client is measuring, every kind of thing exists.
        client_log = out_dir / "logs" / "01-client.log"
        deadline = time.monotonic() + 180
        while not client_log.exists():
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the first turn never started measuring"
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 128 + signal.SIGTERM, stderr
    assert_nothing_left(stdout)
