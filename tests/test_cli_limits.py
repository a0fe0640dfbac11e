"""The limit flags: validated up front, and passed by ``serve`` to its workers unchanged."""

from __future__ import annotations

import pytest

from mcp_tornado import cli, settings
from mcp_tornado.settings import LimitSettings, ServeSettings, WorkerSettings


def worker_settings(*argv: str) -> WorkerSettings:
    parsed = cli.parse_settings(["worker", *argv])
    assert isinstance(parsed, WorkerSettings)
    return parsed


def limits_of(*argv: str) -> LimitSettings:
    return worker_settings(*argv).limits


def test_defaults() -> None:
    assert limits_of() == LimitSettings()


def test_serve_passes_every_limit_to_its_workers() -> None:
    flags = [
        "--rate-limit", "7.5", "--rate-burst", "9", "--max-room-length", "20",
        "--max-connections", "33", "--max-pending-bytes", "4096", "--handshake-timeout", "2.5",
        "--allowed-origin", "https://a.example", "--allowed-origin", "b.example,c.example",
    ]  # fmt: skip
    serve = cli.parse_settings(["serve", *flags])
    assert isinstance(serve, ServeSettings)
    _, worker = serve.children(("ipc:///unused",))
    handed = settings.decode(settings.encode(worker), WorkerSettings)
    assert handed.limits == limits_of(*flags)
    assert limits_of(*flags) == LimitSettings(
        rate=7.5,
        burst=9,
        max_room_length=20,
        max_connections=33,
        max_pending_bytes=4096,
        handshake_timeout=2.5,
        allowed_origins=("https://a.example", "b.example,c.example"),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate-limit", "-1"],
        ["--rate-limit", "nan"],
        ["--rate-burst", "0"],
        ["--max-room-length", "0"],
        ["--max-connections", "-5"],
        ["--max-pending-bytes", "-1"],
        ["--handshake-timeout", "-1"],
        ["--allowed-origin", "https://a.example/path"],
    ],
)
def test_bad_values_stop_the_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        limits_of(*argv)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("mcp-tornado: ")


def test_zero_turns_a_limit_off() -> None:
    off = limits_of("--rate-limit", "0", "--rate-burst", "0", "--max-connections", "0")
    assert off.rate == 0 and off.max_connections == 0
