"""The Autobahn TestSuite (``wstest -m fuzzingclient``) against our WebSocket code.

Two runs, each one wstest process (it runs its cases one after another):

* an echo server built on the worker's own WebSocket classes (``tests/echo.py``:
  ``Connection`` and ``ServerProtocol``), sections 1-7, 9 and 10: every case must
  be OK, except the few the suite itself calls INFORMATIONAL;
* the real signaling endpoint (a router and one worker), sections 2-7: it
  answers messages with its own JSON events instead of echoing them, so only
  how each connection *closes* is compared with the echo's.

wstest is Python 2: ``tests/autobahn/setup.sh`` (run by ``./test.sh``) installs it
into ``.venv-autobahn/``. The HTML reports go to ``build/autobahn/`` and a summary
to ``docs/autobahn.md``. Deselect with ``-m "not autobahn"``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.autobahn.report import (
    INFORMATIONAL,
    Results,
    case_key,
    compare_closing,
    failure_table,
    load_report,
    not_ok,
    write_doc,
)
from tests.support import Cluster, free_port, stop, wait_until

pytestmark = pytest.mark.autobahn

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "tests" / "autobahn" / "setup.sh"
WSTEST = Path(os.environ.get("AUTOBAHN_WSTEST", ROOT / ".venv-autobahn" / "bin" / "wstest"))
REPORTS = ROOT / "build" / "autobahn"
DOC = ROOT / "docs" / "autobahn.md"

# 12.* and 13.* are permessage-deflate, which we never negotiate.
ECHO_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
SIGNAL_CASES = ["2.*", "3.*", "4.*", "5.*", "6.*", "7.*"]
# Section 9 sends messages of up to 16 MiB (9.1.6, 9.2.6): the echo and the worker
# take exactly that (a frame of the limit is accepted), so both refuse alike.
MAX_MESSAGE_SIZE = 16 * 2**20
WSTEST_TIMEOUT = 300  # seconds per run; each takes 20-70 s on the 2-core machine


# --- running wstest --------------------------------------------------------------


def find_wstest() -> Path:
    """The wstest executable; installs it (setup.sh) if missing, skips if there is no Python 2.7."""
    if not WSTEST.exists():
        done = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=600, check=False
        )
        print(done.stdout, done.stderr)
        assert done.returncode == 0, f"{SETUP} failed:\n{done.stdout}\n{done.stderr}"
        if not WSTEST.exists() and "no Python 2.7 found" in done.stdout:
            pytest.skip(f"wstest needs Python 2.7, and there is none ({done.stdout.strip()})")
    assert WSTEST.exists(), f"no wstest at {WSTEST}: run {SETUP}"
    return WSTEST


def run_wstest(agent: str, url: str, cases: list[str]) -> Results:
    """Run the fuzzing client against ``url``; the per-case results, by case id."""
    outdir = REPORTS / agent
    if outdir.exists():
        for old in outdir.iterdir():
            old.unlink()
    outdir.mkdir(parents=True, exist_ok=True)
    spec = {"outdir": str(outdir), "servers": [{"agent": agent, "url": url}], "cases": cases}
    spec_file = REPORTS / f"{agent}.spec.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    started = time.monotonic()
    with open(REPORTS / f"{agent}.wstest.log", "wb") as log:
        process = subprocess.Popen(
            [str(find_wstest()), "-m", "fuzzingclient", "-s", str(spec_file)],
            cwd=REPORTS,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(WSTEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop(process)
            pytest.fail(f"wstest ran over {WSTEST_TIMEOUT} s against {url}")
    print(f"autobahn: {agent}: wstest took {time.monotonic() - started:.1f} s")
    assert process.returncode == 0, f"wstest exited {process.returncode}: see {log.name}"
    results = load_report(outdir, agent)
    assert results is not None, f"wstest wrote no {outdir / 'index.json'}"
    return results


@pytest.fixture(scope="module")
def echo_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    find_wstest()  # skip before starting anything
    port = free_port()
    log = tmp_path_factory.mktemp("autobahn") / "echo.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.echo", "--port", str(port),
             "--max-message-size", str(MAX_MESSAGE_SIZE)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: listening(port), 15, "the echo server")
        return run_wstest("echo", f"ws://127.0.0.1:{port}/ws/signal/", ECHO_CASES)
    finally:
        stop(server)
        print(log.read_text(errors="replace"))


@pytest.fixture(scope="module")
def signal_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Results]:
    find_wstest()
    cluster = Cluster(
        tmp_path_factory.mktemp("autobahn-cluster"),
        workers=1,
        worker_args=("--rate-limit", "0", "--max-message-size", str(MAX_MESSAGE_SIZE)),
    )
    try:
        cluster.start()
        yield run_wstest("signal", cluster.url("autobahn"), SIGNAL_CASES)
    finally:
        cluster.stop()


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


# --- the tests ---------------------------------------------------------------------


def update_doc() -> None:
    """Rewrite docs/autobahn.md from the latest reports of both runs in build/autobahn/."""
    echo, signal = (load_report(REPORTS / agent, agent) for agent in ("echo", "signal"))
    write_doc(DOC, echo, signal, MAX_MESSAGE_SIZE)


def test_echo_conformance(echo_results: Results) -> None:
    update_doc()
    assert len(echo_results) > 250, "wstest ran fewer cases than sections 1-7, 9, 10 hold"
    for case_id in INFORMATIONAL:
        assert case_id in echo_results
    bad = not_ok(echo_results)
    table = failure_table(echo_results, bad)
    print(f"autobahn: echo: {len(echo_results)} cases, {len(bad)} not OK\n{table}")
    assert not bad, f"{len(bad)} Autobahn cases not OK (echo server):\n{table}"


def test_signaling_endpoint_closes_like_the_echo(
    echo_results: Results, signal_results: Results
) -> None:
    update_doc()
    expected = {c for c in echo_results if case_key(c)[0] in {2, 3, 4, 5, 6, 7}}
    assert set(signal_results) == expected
    mismatches, explained = compare_closing(echo_results, signal_results)
    print(
        f"autobahn: signaling: {len(explained)} behaviorClose differences come from the client's"
        " own close code (not compared):\n  " + "\n  ".join(explained)
    )
    statuses = collections.Counter(r["behavior"] for r in signal_results.values())
    print(f"autobahn: signaling: behavior {dict(statuses)}; {len(mismatches)} close differently")
    assert not mismatches, "closes unlike the echo:\n" + "\n".join(mismatches)
