"""``mcp-tornado status``: finding the running serve, and the table it prints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mcp_tornado import status, wire
from mcp_tornado.cli import main


def _runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str]) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = tmp_path / "mcp-tornado"
    folder.mkdir(mode=0o700)
    for name in names:
        (folder / name).touch()
    return folder


def test_only_the_endpoints_of_running_serves_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    me, dead = os.getpid(), 2**22 + 12345  # above any pid_max: no such process
    folder = _runtime(
        tmp_path, monkeypatch, [f"router-8000-{me}.ipc", f"router-8001-{dead}.ipc", "router.ipc"]
    )
    found = status.serve_endpoints(folder)
    assert found == [status.ServeEndpoint(f"ipc://{folder}/router-8000-{me}.ipc", 8000, me)]
    assert status.serve_endpoints(folder, port=8001) == []


def test_several_running_serves_are_listed_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    me = os.getpid()
    _runtime(tmp_path, monkeypatch, [f"router-8000-{me}.ipc", f"router-8001-{me}.ipc"])
    with pytest.raises(SystemExit) as exit_:
        main(["status"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--port 8000" in err and "--port 8001" in err


def test_no_running_serve_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _runtime(tmp_path, monkeypatch, [])
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--port", "8000"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no running `serve` on port 8000" in err


def test_the_table_has_a_row_per_worker() -> None:
    worker = wire.WorkerStatus("h-1-x", "h", 41, 0, 2, 3725.0, 7, 8, 0.25)
    answer = wire.Status("e1", 90061.0, 1, 3, 7, 12.5, 1000, [worker])
    lines = status.render("ipc:///r.ipc", answer).splitlines()
    assert lines[0] == "router   ipc:///r.ipc  epoch e1  up 1d01h  restarts 1"
    assert lines[1].startswith("rooms 3  peers 7  messages/s 12.5")
    assert lines[3].split() == [
        "host", "pid", "worker", "restarts", "peers", "connections", "uptime", "heartbeat"
    ]  # fmt: skip
    assert lines[4].split() == ["h", "41", "0", "2", "7", "8", "1h02m", "0.2s", "ago"]
    assert status.as_json("e", answer)["workers"][0]["pid"] == 41
