"""The limit flags: validated up front, and passed by ``serve`` to its workers unchanged."""

from __future__ import annotations

import pytest

from mcp_tornado import cli
from mcp_tornado.settings import Limits


def limits_of(*argv: str) -> Limits:
    return cli._limits(cli._parser().parse_args(["worker", *argv]))


def test_defaults() -> None:
    assert limits_of() == Limits()


def test_serve_passes_every_limit_to_its_workers() -> None:
    flags = [
        "--rate-limit", "7.5", "--rate-burst", "9", "--max-room-length", "20",
        "--max-connections", "33", "--max-pending-bytes", "4096", "--handshake-timeout", "2.5",
        "--allowed-origin", "https://a.example", "--allowed-origin", "b.example,c.example",
    ]  # fmt: skip
    serve_args = cli._parser().parse_args(["serve", *flags])
    worker_argv = cli._worker_flags(serve_args)
    assert limits_of(*worker_argv) == limits_of(*flags)
    assert limits_of(*flags) == Limits(
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
def test_bad_values_stop_the_command(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        limits_of(*argv)
    assert "mcp-tornado:" in str(stopped.value.code)


def test_zero_turns_a_limit_off() -> None:
    off = limits_of("--rate-limit", "0", "--rate-burst", "0", "--max-connections", "0")
    assert off.rate == 0 and off.max_connections == 0
