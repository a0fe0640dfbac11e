"""psutil sampling of a process tree, labels, spawning and killing a server's process group."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.procmon import (
    ProcTree,
    SpawnedServer,
    check_loopback,
    cpu_between,
    free_port,
    label_process,
    machine_info,
    url_host_port,
)

BUSY = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"


def test_label_process_uses_the_subcommand_word() -> None:
    assert label_process("python -m mcp_tornado router --bind ipc:///x", False) == "router"
    assert (
        label_process("python -m mcp_tornado worker --router ipc:///router.ipc", False) == "worker"
    )
    assert label_process("mcp-tornado serve --workers 2", True) == "main"
    assert label_process("python something", False) == "child"
    assert label_process("python -m zmq_broker_thing", False) == "router"


def test_proc_tree_sums_cpu_and_rss_over_children() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            f"c = subprocess.Popen([sys.executable, '-c', {BUSY!r}, 'worker'])\n"
            f"exec({BUSY!r})\nc.wait()\n",
        ]
    )
    try:
        tree = ProcTree(parent.pid)
        before = tree.snapshot()
        time.sleep(0.05)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(tree.snapshot().procs) < 2:
            time.sleep(0.02)
        mid = tree.snapshot()
        assert len(mid.procs) == 2
        assert mid.rss > 0
        parent.wait(timeout=10)
        # the exited tree cannot be sampled any more: an empty snapshot, no exception
        assert tree.snapshot().procs == {}
        usage = cpu_between(before, mid)
        assert usage["cpu_s"] >= 0
        assert {"main", "worker"} <= {row["label"] for row in usage["procs"]}
    finally:
        parent.kill()
        parent.wait()


def test_cpu_between_counts_new_processes_from_zero() -> None:
    tree = ProcTree(os.getpid())
    a = tree.snapshot()
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    b = tree.snapshot()
    usage = cpu_between(a, b)
    assert usage["cpu_s"] >= 0.15
    assert usage["cpu_pct"] > 0
    assert usage["rss_mib"] > 0


def test_spawned_server_waits_for_port_and_kills_its_group(tmp_path: Path) -> None:
    port = free_port()
    # A "server" that forks a child and listens; stop() must take both down.
    script = (
        "import socket, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen()\n"
        "time.sleep(60)\n"
    )
    server = SpawnedServer(
        shlex.join([sys.executable, "-c", script]),
        f"ws://127.0.0.1:{port}/ws/signal/",
        log_path=tmp_path / "s.log",
    )
    server.start(timeout=20, probe=False)
    try:
        proc = psutil.Process(server.pid)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not proc.children():
            time.sleep(0.05)
        kids = proc.children(recursive=True)
        assert kids
    finally:
        server.stop()
    assert server.proc is not None and server.proc.poll() is not None
    # SIGKILL to the group is delivered at once, but a loaded machine may take a moment
    # to end the orphaned child: wait (bounded) rather than look once.
    _, alive = psutil.wait_procs(kids, timeout=5)
    for kid in alive:
        assert kid.status() == psutil.STATUS_ZOMBIE


def test_spawned_server_that_dies_is_reported() -> None:
    port = free_port()
    server = SpawnedServer(f"{sys.executable} -c 'raise SystemExit(3)'", f"ws://127.0.0.1:{port}/")
    with pytest.raises(RuntimeError, match="exited with 3"):
        server.start(timeout=10)


def test_loopback_only() -> None:
    check_loopback("ws://127.0.0.1:8765/ws/signal/")
    check_loopback("ws://localhost:1/")
    with pytest.raises(SystemExit):
        check_loopback("ws://10.0.0.5:8765/ws/signal/")
    assert url_host_port("ws://127.0.0.1:8765/x") == ("127.0.0.1", 8765)
    assert url_host_port("ws://127.0.0.1/x") == ("127.0.0.1", 80)


def test_machine_info() -> None:
    info = machine_info()
    assert info["cores"] >= 1 and info["ram_gib"] > 0 and info["python"].startswith("3.")
