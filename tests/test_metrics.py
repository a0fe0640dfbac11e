"""End to end: `serve --workers 2 --metrics-port`, known traffic, `/metrics` and `status --json`.

Every counter must move by exactly the traffic made, across both workers, and
stay exact (never backwards) after one worker is killed with SIGKILL and
``serve`` restarts it.  The Grafana dashboard may only query metrics this real
server exports.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import FAST, Client, free_port, ready, spawn, stop, wait_until

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "mcp-tornado.json"

Sample = tuple[str, tuple[tuple[str, str], ...]]


class Serve(NamedTuple):
    port: int
    metrics: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    tmp = tmp_path_factory.mktemp("metrics")
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    port, metrics_port = free_port(), free_port()
    log = tmp / "serve.log"
    process = spawn(
        "serve", "--workers", "2", "--port", str(port), "--metrics-port", str(metrics_port),
        "--rate-limit", "0", *FAST, log=log, env=env,
    )  # fmt: skip
    try:
        try:
            wait_until(lambda: ready(port), 60, "serve")
        except TimeoutError:
            raise AssertionError(
                f"serve did not start: {log.read_text(errors='replace')}"
            ) from None
        yield Serve(port, f"http://127.0.0.1:{metrics_port}/metrics", env, process, log)
    finally:
        stop(process)


def scrape(url: str) -> dict[Sample, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def counts(samples: dict[Sample, float]) -> dict[Sample, float]:
    """The counter samples that are not zero (the router's restarts left out)."""
    return {
        key: value
        for key, value in samples.items()
        if key[0].endswith("_total") and value and key[0] != "mcp_router_restarts_total"
    }


def status(serve: Serve) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", "status", "--json"],
        env={**os.environ, **serve.env},
        capture_output=True,
        timeout=30,
        check=True,
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


OFFER = {"type": "offer", "sdp": "v=0 offer"}
ANSWER = {"type": "answer", "sdp": "v=0 answer"}
CANDIDATE = {"type": "candidate", "candidate": "c"}
CALL_BYTES = sum(
    len(json.dumps(m)) for m in (OFFER, ANSWER, CANDIDATE, CANDIDATE, CANDIDATE, CANDIDATE)
)
JOINS_OK: Sample = ("mcp_joins_total", (("outcome", "ok"),))


async def call(port: int, room: str) -> tuple[Client, Client]:
    """A joins, B joins and offers, A answers, each sends two candidates."""
    url = f"ws://127.0.0.1:{port}/ws/signal/?room={room}"
    a = await Client.connect(url)
    assert (await a.recv())["type"] == "joined"
    b = await Client.connect(url)
    assert (await b.recv())["initiator"] is True
    await a.recv_type("peer-joined")
    b.send(OFFER)
    assert (await a.recv())["type"] == "offer"
    a.send(ANSWER)
    assert (await b.recv())["type"] == "answer"
    for sender, receiver in ((a, b), (b, a), (a, b), (b, a)):
        sender.send(CANDIDATE)
        assert (await receiver.recv())["type"] == "candidate"
    return a, b


def by_family(samples: dict[Sample, float], name: str) -> dict[Sample, float]:
    return {k: v for k, v in samples.items() if k[0] == name}


def check_relayed(samples: dict[Sample, float], calls: int) -> None:
    """``calls`` calls' messages, by type (the local/router split is the kernel's choice)."""
    by_kind = {"offer": 0.0, "answer": 0.0, "candidate": 0.0}
    for (_, labels), value in by_family(samples, "mcp_messages_relayed_total").items():
        by_kind[dict(labels)["type"]] += value
    assert by_kind == {"offer": calls, "answer": calls, "candidate": 4 * calls}
    assert sum(by_family(samples, "mcp_relayed_bytes_total").values()) == calls * CALL_BYTES


async def settle(url: str, done: Callable[[dict[Sample, float]], bool]) -> dict[Sample, float]:
    """Scrape until ``done`` (workers report every heartbeat), then a few heartbeats more."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not done(counts(scrape(url))):
        assert loop.time() < deadline, counts(scrape(url))
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # nothing else may arrive
    return counts(scrape(url))


async def quiet(url: str, period: float = 1.0) -> dict[Sample, float]:
    """The counters once they have not moved for ``period`` seconds (several heartbeats)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    last, since = counts(scrape(url)), loop.time()
    while loop.time() - since < period:
        assert loop.time() < deadline, "the counters never stopped moving"
        await asyncio.sleep(0.1)
        now = counts(scrape(url))
        if now != last:
            last, since = now, loop.time()
    return last


@pytest.mark.gen_test(timeout=180)
@pytest.mark.usefixtures("close_clients")
async def test_counters_are_exact_across_two_workers_and_a_worker_killed(serve: Serve) -> None:
    assert counts(scrape(serve.metrics)) == {}
    clients: list[Client] = []
    calls = 6  # 12 peers: the kernel spreads them over both workers
    for i in range(calls):
        clients += await call(serve.port, f"room{i}")
    refused = await Client.connect(f"ws://127.0.0.1:{serve.port}/ws/signal/?room=room0")
    assert (await refused.recv())["code"] == "room_full"
    assert await refused.closed() == 4409
    bad = await Client.connect(f"ws://127.0.0.1:{serve.port}/ws/signal/?room=" + "x" * 100)
    assert (await bad.recv())["code"] == "invalid_room"
    assert await bad.closed() == 4400
    clients[0].send("{not json")
    assert (await clients[0].recv())["code"] == "invalid_json"

    first = await settle(serve.metrics, lambda now: now.get(JOINS_OK) == 2 * calls and sum(
        by_family(now, "mcp_messages_relayed_total").values()) == 6 * calls)  # fmt: skip
    check_relayed(first, calls)
    assert {k: v for k, v in first.items() if "relayed" not in k[0]} == {
        JOINS_OK: 2 * calls,
        ("mcp_joins_total", (("outcome", "room_full"),)): 1,
        ("mcp_error_frames_total", (("code", "room_full"),)): 1,
        ("mcp_error_frames_total", (("code", "invalid_room"),)): 1,
        ("mcp_error_frames_total", (("code", "invalid_json"),)): 1,
        ("mcp_handshakes_refused_total", (("reason", "room_name"),)): 1,
        ("mcp_closes_total", (("code", "4409"),)): 1,
        ("mcp_closes_total", (("code", "4400"),)): 1,
    }
    samples = scrape(serve.metrics)
    assert samples["mcp_call_setup_seconds_count", ()] == calls
    assert samples["mcp_peers_open", ()] == 2 * calls
    assert samples["mcp_rooms_open", ()] == calls
    peers = by_family(samples, "mcp_worker_peers")
    assert len(peers) == 2 and sum(peers.values()) == 2 * calls
    assert all(peers.values()), "the kernel put every peer on one worker"
    rtt = by_family(samples, "mcp_router_rtt_seconds_count")
    assert len(rtt) == 2 and all(rtt.values())

    state = status(serve)
    assert (state["rooms"], state["peers"], len(state["workers"])) == (calls, 2 * calls, 2)
    assert sorted(w["index"] for w in state["workers"]) == [0, 1]
    assert sum(w["peers"] for w in state["workers"]) == 2 * calls
    assert state["messages"] == 6 * calls

    # SIGKILL worker 0 (its counts are reported: we saw them); serve restarts it.
    victim = next(w for w in state["workers"] if w["index"] == 0)
    os.kill(victim["pid"], signal.SIGKILL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        state = status(serve)
        workers = {w["index"]: w for w in state["workers"]}
        if len(workers) == 2 and workers[0]["pid"] != victim["pid"]:
            break
        assert loop.time() < deadline, f"worker 0 did not come back: {state}"
        await asyncio.sleep(0.2)
    assert (workers[0]["generation"], workers[1]["generation"]) == (1, 0)
    Client.close_all()
    base = await quiet(serve.metrics)  # the survivors' closes, counted and reported
    assert base[("mcp_worker_restarts_total", ())] == 1
    for key, value in first.items():  # never backwards
        assert base.get(key, 0) >= value, key

    more = 3
    for i in range(more):
        await call(serve.port, f"again{i}")
    later = await settle(serve.metrics, lambda now: now.get(JOINS_OK) == base[JOINS_OK] + 2 * more)
    moved = {k: v - base.get(k, 0) for k, v in later.items() if v != base.get(k, 0)}
    check_relayed(moved, more)
    assert {k for k in moved if "relayed" not in k[0]} == {JOINS_OK}, moved
    assert all(v > 0 for v in moved.values()), moved
    assert later[("mcp_worker_restarts_total", ())] == 1
    state = status(serve)
    assert (state["rooms"], state["peers"], len(state["workers"])) == (more, 2 * more, 2)


def test_status_without_a_router_that_answers_says_so_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", "status", "--router", f"ipc://{tmp_path}/none.ipc"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "did not answer within 2 s" in result.stderr


def test_status_finds_the_running_serve_and_prints_a_table(serve: Serve) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", "status", "--port", str(serve.port)],
        env={**os.environ, **serve.env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert f"router-{serve.port}-{serve.process.pid}.ipc" in result.stdout
    assert re.search(r"^host\s+pid\s+worker\s+restarts\s+peers", result.stdout, re.MULTILINE)


def _queries(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def test_every_dashboard_query_names_metrics_the_server_exports(serve: Serve) -> None:
    with urllib.request.urlopen(serve.metrics, timeout=5) as response:
        text = response.read().decode()
    exported: set[str] = set()
    for family in text_string_to_metric_families(text):
        exported.add(family.name + ("_total" if family.type == "counter" else ""))
        if family.type == "histogram":
            exported |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    queries = list(_queries(panels))
    assert len(queries) >= 12
    named = {name for query in queries for name in re.findall(r"\bmcp_[a-z0-9_]+", query)}
    assert named, "no query names a metric"
    assert named <= exported, f"not exported: {sorted(named - exported)}"
    sections = {p["title"] for p in panels if p.get("type") == "row"}
    assert {
        "Traffic",
        "Joins and refusals",
        "Latency",
        "Errors",
        "Per worker",
        "Router",
    } <= sections
