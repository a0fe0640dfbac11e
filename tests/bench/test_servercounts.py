"""The bench checks a server's own counts (its /metrics) against the client's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import drivers, report, servercounts
from bench.procmon import SpawnedServer, free_port
from tests.bench.conftest import _mcp


@pytest.fixture
def mcp_with_metrics(tmp_path: Path) -> Iterator[tuple[SpawnedServer, str]]:
    """``serve --workers 2`` with its router's /metrics on a free port."""
    port = free_port()
    for server in _mcp(
        tmp_path, "mcp-metrics", f"--workers 2 --rate-limit 0 --metrics-port {port}"
    ):
        yield server, f"http://127.0.0.1:{port}/metrics"


def test_a_disagreement_is_reported_and_fails_the_run() -> None:
    before = {"messages_relayed": 10.0, "joins": 2.0}
    after = {"messages_relayed": 15.0, "joins": 6.0}
    counts = servercounts.compare(before, after, {"sent": 5, "joined": 3})
    assert counts["server"] == {"messages_relayed": 5, "joins": 4}
    assert counts["disagree"] == ["joins: server counted 4, client joined 3"]
    run = {"scenario": "connect", "params": {}, "metrics": {}, "server_counts": counts}
    assert report.problems(run) == [
        "the server's counts disagree: joins: server counted 4, client joined 3"
    ]


@pytest.mark.parametrize("scenario", ["relay", "connect", "churn", "calls"])
def test_mcp_tornados_counts_agree_with_the_clients(
    scenario: str, mcp_with_metrics: tuple[SpawnedServer, str]
) -> None:
    server, metrics_url = mcp_with_metrics
    target = drivers.Target(server.url, "mcp", server.pid, metrics_url)
    sizes: dict[str, dict[str, Any]] = {
        "relay": {"pairs": 10, "procs": 2, "window": 2, "messages": 50, "duration": 2},
        "connect": {"peers": 40, "procs": 2},
        "churn": {"pairs": 4, "duration": 1.5},
        "calls": {"rate": 20.0, "duration": 1.0},
    }
    run = drivers.run(scenario, target, progress=False, timeout=120, **sizes[scenario])
    counts = run["server_counts"]
    assert counts["disagree"] == [], counts
    assert counts["server"]["joins"] > 0
    if scenario != "connect":
        assert counts["server"]["messages_relayed"] > 0
