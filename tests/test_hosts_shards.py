"""Two router shards on their own emulated hosts, CURVE on every link (see tests/netns.py).

Two router hosts (shard 0 and shard 1, one shared router key pair), two worker
hosts that list both, and a client host.  Pairs split across the worker hosts
relay on both shards; ``kill -9`` of shard 0's router: a join to one of its
rooms is refused at once with 1013 while shard 1's rooms relay every message
once and in order; shard 0 restarted: the workers re-register with it and its
rooms relay again.  Root only; skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Host, HostNet, hosts, no_leftovers
from tests.test_hosts_curve import BEAT, PORT, Deployment, make_keys, mcp

__all__ = ["hosts", "no_leftovers"]  # fixtures, used by name

pytestmark = pytest.mark.usefixtures("no_leftovers")

ROUTERS = ["10.203.0.1", "10.203.0.5"]
ENDPOINTS = [f"tcp://{address}:5555" for address in ROUTERS]
SHARDED = ["--shards", "2"]


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    tmp_path.chmod(0o755)
    yield tmp_path


def start_router(host: Host, shard: int, keys: Path, tmp: Path) -> None:
    host.spawn(
        mcp(
            "router", "--bind", ENDPOINTS[shard], "--shard", str(shard), *SHARDED, *BEAT,
            "--resync-grace", "3", "--expected-workers", "2",
            "--curve-secret-key-file", str(keys / "router.key_secret"),
            "--curve-allowed-dir", str(keys / "allowed"),
        ),
        tmp / f"router{shard}.log",
    )  # fmt: skip


def deploy(net: HostNet, tmp: Path) -> tuple[Deployment, list[Host], Path]:
    routers = [net.add(f"router{shard}", address) for shard, address in enumerate(ROUTERS)]
    workers = [net.add("wa", "10.203.0.2"), net.add("wb", "10.203.0.3")]
    client = net.add("client", "10.203.0.4")
    keys = make_keys(tmp)
    for shard, host in enumerate(routers):
        start_router(host, shard, keys, tmp)
    for index, (host, name) in enumerate(zip(workers, ("wa", "wb"), strict=True)):
        host.spawn(
            mcp(
                "worker", *(arg for e in ENDPOINTS for arg in ("--router", e)),
                "--host", host.address, "--port", str(PORT), *BEAT, "--static-dir", str(tmp),
                "--rate-limit", "0", "--max-connections-per-ip", "0",  # one client host
                "--curve-secret-key-file", str(keys / f"{name}.key_secret"),
                "--curve-server-key-file", str(keys / "router.key"),
            ),
            tmp / f"worker{index}.log",
        )  # fmt: skip
    deployment = Deployment(net, routers[0], workers, client, tmp)
    for index in (0, 1):
        deployment.wait_log(f"worker{index}", "serving on")
        for shard in (0, 1):
            deployment.wait_log(f"worker{index}", f"(shard {shard})")
    return deployment, routers, keys


def relayed(report: dict[str, object], rooms: int, each_way: int) -> bool:
    expected = {"delivered": rooms * 2 * each_way, "cross_room": 0, "duplicates": 0}
    expected |= {"out_of_order": 0, "missing": 0, "from_self": 0}
    return report == report | expected


def test_a_dead_shard_host_stops_only_its_rooms_over_curve(hosts: HostNet, tmp: Path) -> None:
    deployment, routers, keys = deploy(hosts, tmp)
    assert all("CURVE on" in deployment.log(f"router{shard}") for shard in (0, 1))
    both = deployment.client_run("pairs", "--rooms", "40", "--messages", "100", "--prefix", "all")
    assert relayed(both, 40, 100), both

    killed = time.monotonic()
    os.killpg(routers[0].processes[0].pid, signal.SIGKILL)
    routers[0].processes[0].wait(10)
    for index in (0, 1):
        deployment.wait_log(f"worker{index}", "lost the connection to router shard 0", 10)
    detected = time.monotonic() - killed
    shard0 = ["--shard", "0", *SHARDED]
    shard1 = ["--shard", "1", *SHARDED]
    refusal = deployment.client_run("refused", *shard0, "--prefix", "dead")
    assert refusal["code"] == "router_unavailable" and refusal["close"] == 1013, refusal
    during = deployment.client_run(
        "pairs", *shard1, "--rooms", "20", "--messages", "100", "--prefix", "during"
    )
    assert relayed(during, 20, 100), during

    # Three joiners per room, from both worker hosts, in 200 of shard 0's rooms: refused
    # (1013) and retrying while it is down, admitted during and after its rebuild.
    racing = deployment.client.spawn(
        [
            sys.executable, "-m", "tests.hosts_client", "race", deployment.url(0),
            deployment.url(1), *shard0, "--rooms", "200", "--seconds", "60", "--prefix", "race",
        ],
        tmp / "race.json",
    )  # fmt: skip
    time.sleep(0.5)
    restarted = time.monotonic()
    start_router(routers[0], 0, keys, tmp)
    for index in (0, 1):
        log = tmp / f"worker{index}.log"
        while log.read_text(errors="replace").count("(shard 0)") < 2:
            assert time.monotonic() - restarted < 30, deployment.log(f"worker{index}")
            time.sleep(0.05)
    back = time.monotonic() - restarted
    assert racing.wait(90) == 0
    race = json.loads((tmp / "race.json").read_text().splitlines()[-1])
    assert race["exact"] == 200 and race["wrong"] == {}, race
    assert race["retries"] > 0  # the race did start while shard 0 was down
    after = deployment.client_run(
        "pairs", *shard0, "--rooms", "20", "--messages", "100", "--prefix", "after"
    )
    assert relayed(after, 20, 100), after
    print(
        f"\ntwo shards over CURVE on emulated hosts: shard 0 killed, both workers saw it "
        f"after {detected * 1000:.0f} ms (log polling included); a join to its rooms refused "
        f"in {refusal['ms']} ms from the client host; shard 1: 4,000 messages in 20 split "
        f"pairs in {during['seconds']} s meanwhile; shard 0 restarted: both workers "
        f"registered after {back:.2f} s (process start included); race: 3 joiners in each of "
        f"200 of its rooms from both hosts, {race['retries']} retried 1013s, exactly two "
        f"admitted in every room"
    )
