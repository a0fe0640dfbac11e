"""The default ipc:// folder: refused unless it is ours alone (issue 12, item 3).

Anyone who can write to the folder of the router's socket can move the socket
away and bind an impostor router at its path, which every worker that
reconnects would then talk to.  The tests run as root in CI, so "another user"
is uid 65534 (nobody), set with ``os.chown``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from mcp_tornado import settings

NOBODY = 65534


def _chowned(path: Path) -> None:
    path.mkdir(mode=0o700)
    os.chown(path, NOBODY, NOBODY)


def _open(path: Path) -> None:
    path.mkdir()
    path.chmod(0o777)


def _group_readable(path: Path) -> None:
    path.mkdir()
    path.chmod(0o750)


def _symlink(path: Path) -> None:
    target = path.parent / "elsewhere"
    target.mkdir(mode=0o700)
    path.symlink_to(target)


def _dangling_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere")


def _file(path: Path) -> None:
    path.write_text("")


BAD: dict[str, Callable[[Path], None]] = {
    "another user's": _chowned,
    "mode 0777": _open,
    "mode 0750": _group_readable,
    "a symlink": _symlink,
    "a dangling symlink": _dangling_symlink,
    "a file": _file,
}


@pytest.fixture(params=["xdg", "tmp"])
def expected_dir(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point runtime_dir() at tmp_path, through $XDG_RUNTIME_DIR or the /tmp fallback."""
    if request.param == "xdg":
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
        return tmp_path / "mcp-tornado"
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / f"mcp-tornado-{os.getuid()}"


def test_a_new_folder_is_made_private(expected_dir: Path) -> None:
    assert settings.runtime_dir() == expected_dir
    info = expected_dir.lstat()
    assert info.st_uid == os.getuid()
    assert info.st_mode & 0o777 == 0o700
    assert settings.runtime_dir() == expected_dir  # and taken again as it is
    assert settings.default_endpoint() == f"ipc://{expected_dir}/router.ipc"


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder another user's needs root")
@pytest.mark.parametrize("kind", list(BAD))
def test_a_folder_that_is_not_ours_alone_is_refused(expected_dir: Path, kind: str) -> None:
    BAD[kind](expected_dir)
    with pytest.raises(ValueError, match="unsafe runtime directory"):
        settings.runtime_dir()


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder another user's needs root")
@pytest.mark.parametrize("command", ["worker", "router", "serve"])
def test_the_commands_stop_with_one_line(tmp_path: Path, command: str) -> None:
    """The router's default bind and a worker's default link refuse it: exit 2, one line."""
    _open(tmp_path / "mcp-tornado")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("MCP_TORNADO_SETTINGS", None)
    done = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mcp-tornado: unsafe runtime directory"), lines[0]
    assert "open to group or others" in lines[0]
    assert not (tmp_path / "mcp-tornado" / "router.ipc").exists()
