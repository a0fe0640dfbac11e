"""Small real runs (seconds): every scenario against the picows reference relay and a real
``mcp-tornado serve --workers 2``, the CLI end to end (JSON + PNG), and ``compare --quick``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import drivers
from bench.compare import resolve_command
from bench.procmon import SpawnedServer
from tests.support import Cluster, free_port

SERVERS = ["reference_relay", "mcp_server"]
REPO = Path(__file__).resolve().parents[2]


def target(server: SpawnedServer, label: str) -> drivers.Target:
    return drivers.Target(url=server.url, label=label, server_pid=server.pid)


@pytest.mark.parametrize("server_fixture", SERVERS)
def test_relay_no_loss_and_server_sampled(
    server_fixture: str, request: pytest.FixtureRequest
) -> None:
    server: SpawnedServer = request.getfixturevalue(server_fixture)
    run = drivers.run(
        "relay",
        target(server, server_fixture),
        pairs=20,
        procs=2,
        window=4,
        messages=200,
        duration=5,
        progress=False,
        timeout=120,
    )
    m = run["metrics"]
    assert run["failures"] == []
    assert m["ready_pairs"] == 20
    assert m["sent"] == 20 * 200 and m["echoed"] == 20 * 200
    assert m["latency_ms"]["count"] == 20 * 200
    assert m["deliveries"] == 2 * 20 * 200
    assert (m["lost"], m["reordered"], m["duplicates"]) == (0, 0, 0)
    assert m["errors"] == {} and m["setup_errors"] == {}
    assert m["deliveries_per_s"] > 0
    assert run["server"]["cpu_s"] > 0 and run["server"]["rss_mib"] > 0
    assert len(run["client"]["procs_cpu_pct"]) == 2
    if server_fixture == "mcp_server":
        labels = set(run["server"]["cpu_pct_by_label"])
        assert {"router", "worker"} <= labels


@pytest.mark.parametrize("server_fixture", SERVERS)
def test_openloop_connect_churn_idle(server_fixture: str, request: pytest.FixtureRequest) -> None:
    server: SpawnedServer = request.getfixturevalue(server_fixture)
    t = target(server, server_fixture)
    ol = drivers.run(
        "openloop",
        t,
        pairs=20,
        procs=1,
        rates=[20, 40],
        duration=1.0,
        stop_p99_ms=None,
        progress=False,
        timeout=120,
    )
    assert [s["metrics"]["offered_msgs_per_s"] for s in ol["steps"]] == [400, 800]
    for step in ol["steps"]:
        assert step["metrics"]["lost"] == 0 and step["metrics"]["reordered"] == 0
        assert step["metrics"]["latency_ms"]["count"] == pytest.approx(
            20 * 20 * step["metrics"]["rate_per_pair"] / 20, rel=0.2
        )

    cn = drivers.run(
        "connect",
        t,
        peers=200,
        procs=2,
        wait_joined=1.0 if server_fixture else 0,
        progress=False,
        timeout=120,
    )
    assert cn["metrics"]["joined"] == 200 and cn["metrics"]["joins_per_s"] > 0
    assert cn["metrics"]["errors"] == {}
    assert cn["metrics"]["events"].get("no_joined_event", 0) == 0  # both send "joined"

    ch = drivers.run("churn", t, pairs=5, procs=1, duration=1.5, progress=False, timeout=120)
    assert ch["metrics"]["cycles"] > 5
    assert ch["metrics"]["room_full_first_join"] == 0

    idle = drivers.run(
        "idle",
        t,
        peers=200,
        procs=2,
        hold=1.0,
        ping_interval=0.5,
        settle=0.5,
        progress=False,
        timeout=120,
    )
    im = idle["metrics"]
    assert im["held"] == 200 and im["still_open"] == 200 and im["closed_during_hold"] == 0
    assert im["pongs"] == im["pings"] > 0
    assert "server_kib_per_peer" in im


def test_cli_writes_json_and_pngs(tmp_path: Path, reference_relay: SpawnedServer) -> None:
    out = tmp_path / "r.json"
    plots = tmp_path / "png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "relay",
            "--url",
            reference_relay.url,
            "--server-pid",
            str(reference_relay.pid),
            "--peers",
            "20,40",
            "--duration",
            "1",
            "--messages",
            "50",
            "--out",
            str(out),
            "--plot-dir",
            str(plots),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deliveries/s (one-way)" in proc.stdout
    doc = json.loads(out.read_text())
    assert [r["params"]["peers"] for r in doc["runs"]] == [20, 40]
    assert {p.name for p in plots.iterdir()} >= {"latency_cdf.png", "scaling.png", "comparison.png"}


def test_cli_spawn_option_starts_and_stops_the_server(tmp_path: Path) -> None:
    from bench.procmon import free_port

    port = free_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "connect",
            "--url",
            f"ws://127.0.0.1:{port}/ws/signal/",
            "--spawn",
            f"{sys.executable} -m bench.reference_relay --port {port}",
            "--peers",
            "40",
            "--out",
            str(tmp_path / "c.json"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads((tmp_path / "c.json").read_text())["runs"][0]
    assert run["metrics"]["joined"] == 40
    assert run["server"]["rss_mib"] > 0


def test_compare_quick(tmp_path: Path) -> None:
    """The headline command, tiny sizes: mcp-tornado 2 workers, the same server again as an
    --also target (run beside it) and the reference relay."""
    server_cmd = resolve_command(
        "mcp-tornado serve --workers {workers} --host 127.0.0.1 --port {port} --rate-limit 0"
    )
    if server_cmd is None:
        pytest.skip("mcp-tornado is not installed")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "compare",
            "--quick",
            "--workers",
            "2",
            "--skip",
            "baseline",
            "--also",
            f"again@{REPO}={server_cmd}",
            "--out-dir",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md = (tmp_path / "compare.md").read_text()
    assert "Machine:" in md
    assert "| mcp-tornado 2w |" in md and "| picows reference |" in md
    assert "| again-2w |" in md and "| relay w1 deliveries/s | mcp-tornado 2w |" in md
    doc = json.loads((tmp_path / "compare.json").read_text())
    targets = [r["compare_target"] for r in doc["runs"]]
    assert set(targets) == {"mcp-tornado 2w", "again-2w", "picows reference"}
    # the two builds take turns, step by step
    assert targets[:4] == ["mcp-tornado 2w", "again-2w", "again-2w", "mcp-tornado 2w"]
    assert (tmp_path / "compare_relay_w1_cdf.png").stat().st_size > 5000


def test_the_load_client_speaks_wss_with_ca_or_insecure(tmp_path: Path) -> None:
    """A relay over wss:// to mcp-tornado with a certificate; without trust it cannot connect."""
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    keyfile.write_bytes(leaf.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(cafile))
    command = resolve_command(
        "mcp-tornado serve --workers 1 --host 127.0.0.1 --port {port} --rate-limit 0 "
        f"--max-connections-per-ip 0 --certfile {certfile} --keyfile {keyfile}"
    )
    if command is None:
        pytest.skip("mcp-tornado is not installed")
    from bench.procmon import free_port

    def relay(*trust: str, scenario: str = "relay") -> subprocess.CompletedProcess[str]:
        sizes = ["--duration", "1"] if scenario == "relay" else []
        return subprocess.run(
            [
                sys.executable, "-m", "bench", scenario, "--peers", "20", *sizes,
                "--spawn", command.format(port=free_port()), *trust,
                "--out", str(tmp_path / "r.json"), "--no-progress", "--timeout", "120",
            ],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip

    done = relay("--ca", str(cafile))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run = json.loads((tmp_path / "r.json").read_text())["runs"][0]
    assert run["url"].startswith("wss://127.0.0.1:")
    assert run["metrics"]["deliveries"] > 0 and run["metrics"]["lost"] == 0
    assert relay("--insecure").returncode == 0
    done = relay("--ca", str(cafile), scenario="connect")  # (the storm has its own connect)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads((tmp_path / "r.json").read_text())["runs"][0]["metrics"]["joined"] == 20
    untrusted = relay()  # the system's CAs do not know this one: never ready
    assert untrusted.returncode != 0


@pytest.mark.parametrize("scenario", ["relay", "openloop"])
def test_url_b_puts_every_b_on_the_other_worker(scenario: str, tmp_path: Path) -> None:
    """``url_b``: A of each pair joins worker 0, B worker 1; a dead url_b refuses every B."""
    cluster = Cluster(tmp_path, workers=2, worker_args=("--rate-limit", "0")).start()
    try:
        split = drivers.Target(url=cluster.url(None, 0), label="split", server_pid=None)
        params: dict[str, Any] = {"pairs": 10, "duration": 1.0, "progress": False}
        if scenario == "relay":
            params |= {"messages": 50, "window": 2}
        else:
            params |= {"rates": [20.0]}
        run = drivers.run(scenario, split, url_b=cluster.url(None, 1), **params)
        m = run["metrics"]
        assert m["ready_pairs"] == 10 and m["setup_errors"] == {}
        assert (m["lost"], m["reordered"], m["duplicates"]) == (0, 0, 0) and m["deliveries"] > 0
        dead = f"ws://127.0.0.1:{free_port()}/ws/signal/"
        run = drivers.run(scenario, split, url_b=dead, setup_timeout=5.0, **params)
        assert run["metrics"]["ready_pairs"] == 0
        assert run["metrics"]["setup_errors"] == {"connect_refused": 10}
    finally:
        cluster.stop()
