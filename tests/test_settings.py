"""Every setting is defined once (mcp_tornado.settings); the CLI and serve's children follow it."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import psutil
import pytest

from mcp_tornado import cli, ice, settings, tokens
from mcp_tornado.settings import (
    SETTINGS_ENV,
    LimitSettings,
    LinkSettings,
    LogSettings,
    RouterSettings,
    ServeSettings,
    WorkerSettings,
    leaves,
)
from tests.rawws import PING, RawWebSocket
from tests.support import free_port, ready, spawn, stop, wait_until

SECRET = b"settings-test-secret-0123456789"
TURN_SECRET = b"settings-test-turn-secret-9876543210"

# The flags the README and the tests rely on: none may disappear or change its default.
KNOWN_DEFAULTS: dict[str, dict[str, object]] = {
    "worker": {
        "--host": "127.0.0.1", "--port": 8000, "--max-message-size": 65536,
        "--ping-interval": 20.0, "--ping-timeout": 20.0, "--shutdown-timeout": 10.0,
        "--rate-limit": 50.0, "--rate-burst": 200, "--max-room-length": 64,
        "--max-connections": 10_000, "--max-pending-bytes": 1024 * 1024,
        "--handshake-timeout": 10.0, "--heartbeat-interval": 0.5, "--heartbeat-liveness": 3,
        "--log-level": "INFO", "--log-format": "text", "--log-payloads": False,
    },
    "router": {
        "--resync-grace": 1.0, "--expected-workers": 0, "--heartbeat-interval": 0.5,
        "--heartbeat-liveness": 3, "--log-level": "INFO", "--log-format": "text",
        "--log-payloads": False,
    },
}  # fmt: skip
KNOWN_FLAGS = {
    "serve": {"--workers", "--router-endpoint", "--static-dir", "--allowed-origin",
              "--allowed-host", "--token-secret-file", "--turn-uri", "--stun-uri",
              "--turn-secret-file", "--turn-ttl", *KNOWN_DEFAULTS["worker"]},
    "worker": {"--router", "--static-dir", "--allowed-origin", "--allowed-host",
               "--token-secret-file", "--turn-uri", "--stun-uri", "--turn-secret-file",
               "--turn-ttl", *KNOWN_DEFAULTS["worker"]},
    "router": {"--bind", *KNOWN_DEFAULTS["router"]},
}  # fmt: skip


def command_parser(command: str) -> argparse.ArgumentParser:
    return cli._parser().commands[command]


def options(command: str) -> dict[str, argparse.Action]:
    parser = command_parser(command)
    return {flag: a for a in parser._actions for flag in a.option_strings if flag != "-h"}


def leaf_defaults(cls: type[settings.Settings]) -> dict[str, object]:
    return {leaf.flag.name: leaf.default for leaf in leaves(cls)}


# --- defaults are written once -------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "router", "worker"])
def test_the_cli_has_no_defaults_of_its_own(command: str) -> None:
    for flag, action in options(command).items():
        assert action.default is argparse.SUPPRESS, flag


def test_no_flags_give_the_structs_defaults() -> None:
    assert cli.parse_settings(["worker"]) == WorkerSettings()
    assert cli.parse_settings(["router"]) == RouterSettings()
    assert cli.parse_settings(["serve"]) == ServeSettings()


def test_every_known_flag_keeps_its_name_and_default() -> None:
    for command, known in KNOWN_FLAGS.items():
        assert known <= set(options(command)), command
    assert KNOWN_DEFAULTS["worker"].items() <= leaf_defaults(WorkerSettings).items()
    assert KNOWN_DEFAULTS["router"].items() <= leaf_defaults(RouterSettings).items()


def test_help_shows_the_structs_defaults() -> None:
    text = command_parser("worker").format_help()
    for flag, default in [("--rate-limit", "50"), ("--max-pending-bytes", "1048576")]:
        assert flag in text and f"(default: {default})" in text


def test_a_flag_shared_by_two_settings_has_one_default() -> None:
    seen: dict[str, object] = {}
    for leaf in leaves(ServeSettings):
        if leaf.default is not msgspec.NODEFAULT:
            assert seen.setdefault(leaf.flag.name, leaf.default) == leaf.default, leaf.path


# --- every setting has a flag ----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "cls"),
    [("worker", WorkerSettings), ("router", RouterSettings), ("serve", ServeSettings)],
)
def test_every_setting_has_a_flag(command: str, cls: type[settings.Settings]) -> None:
    flags = options(command)
    fields = list(leaves(cls))  # a field without a Flag would raise here
    assert fields
    for leaf in fields:
        if leaf.path not in cls.derived:
            assert leaf.flag.name in flags, leaf.path
            assert leaf.flag.help, leaf.path


def test_every_flag_reaches_its_setting() -> None:
    serve = cli.parse_settings(
        ["serve", "--workers", "3", "--heartbeat-interval", "0.25", "--hwm", "7", "--port", "9"]
    )
    assert isinstance(serve, ServeSettings)
    assert serve.workers == 3 and serve.worker.port == 9
    assert serve.worker.link.heartbeat_interval == serve.router.heartbeat_interval == 0.25
    assert serve.worker.link.hwm == serve.router.hwm == 7
    (router,), worker = serve.children(("ipc:///x",))
    assert router.bind == worker.link.endpoint == "ipc:///x"
    assert router.expected_workers == 3


def test_one_log_flag_sets_every_process() -> None:
    serve = cli.parse_settings(["serve", "--log-format", "json", "--log-payloads"])
    assert isinstance(serve, ServeSettings)
    assert serve.worker.log == serve.router.log == LogSettings(format="json", payloads=True)
    (router,), worker = serve.children(("ipc:///x",))
    assert router.log == worker.log == serve.worker.log
    alone = cli.parse_settings(["worker", "--log-payloads", "--no-log-payloads"])
    assert isinstance(alone, WorkerSettings) and alone.log.payloads is False


# --- bad values: one line, exit status 2 ----------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["worker", "--rate-limit", "-1"], "--rate-limit"),
        (["worker", "--rate-burst", "0"], "--rate-burst"),
        (["worker", "--port", "70000"], "--port"),
        (["worker", "--ping-interval", "0"], "--ping-interval"),
        (["worker", "--allowed-origin", "not an origin"], "not an origin"),
        (["worker", "--token-secret-file", "/nonexistent/secret"], "/nonexistent/secret"),
        (["router", "--heartbeat-interval", "nan"], "--heartbeat-interval"),
        (["router", "--heartbeat-liveness", "0"], "--heartbeat-liveness"),
        (["serve", "--workers", "0"], "--workers"),
        (["serve", "--max-pending-bytes", "-1"], "--max-pending-bytes"),
        (["serve", "--log-level", "LOUD"], "--log-level"),
        (["router", "--log-format", "xml"], "--log-format"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_2(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.parse_settings(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("mcp-tornado: ") and err.count("\n") == 1 and flag in err, err


def test_the_command_prints_no_traceback() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", "worker", "--max-connections", "-5"],
        capture_output=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert run.stderr.decode().splitlines() == [
        "mcp-tornado: --max-connections must be 0 (off) or positive, not -5"
    ]


def test_constructing_a_bad_struct_names_the_flag() -> None:
    with pytest.raises(ValueError, match="--rate-limit"):
        LimitSettings(rate=-1)
    with pytest.raises(ValueError, match="--heartbeat-liveness"):
        LinkSettings("ipc:///x", heartbeat_liveness=0)


# --- handing settings to a child -----------------------------------------------------------


def test_encoded_settings_leave_the_secret_out(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = WorkerSettings(limits=LimitSettings(rate=3, token_secret=SECRET))
    text = settings.encode(worker)
    assert SECRET.decode() not in text and SECRET.decode() not in repr(worker)
    monkeypatch.setenv(tokens.SECRET_ENV, SECRET.decode())
    assert settings.decode(text, WorkerSettings) == worker  # the secret comes from the env
    monkeypatch.delenv(tokens.SECRET_ENV)
    assert settings.decode(text, WorkerSettings).limits.token_secret is None


def test_a_child_takes_its_settings_from_the_env_not_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(SETTINGS_ENV, settings.encode(WorkerSettings(port=1234)))
    parsed = cli.parse_settings(["worker"])
    assert isinstance(parsed, WorkerSettings) and parsed.port == 1234
    with pytest.raises(SystemExit) as stopped:
        cli.parse_settings(["worker", "--port", "5"])
    assert stopped.value.code == 2 and SETTINGS_ENV in capsys.readouterr().err
    monkeypatch.setenv(SETTINGS_ENV, '{"limits": {"rate": -1}}')
    with pytest.raises(SystemExit):
        cli.parse_settings(["worker"])
    assert "--rate-limit" in capsys.readouterr().err


def test_serve_hands_children_their_settings_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    turn_secret_file = tmp_path / "turn-secret"
    turn_secret_file.write_bytes(TURN_SECRET + b"\n")
    port = free_port()
    log = tmp_path / "serve.log"
    serve = spawn(
        "--log-level", "DEBUG", "serve", "--workers", "1", "--port", str(port),
        "--ping-interval", "0.3", "--rate-limit", "7", "--heartbeat-interval", "0.1",
        "--heartbeat-liveness", "10", "--shutdown-timeout", "3",
        "--token-secret-file", str(secret_file), "--turn-uri", "turn:127.0.0.1:3478",
        "--turn-secret-file", str(turn_secret_file), "--stun-uri", "stun:127.0.0.1:3478",
        log=log,
    )  # fmt: skip
    try:
        wait_until(lambda: ready(port), 15, "serve to answer")
        children = psutil.Process(serve.pid).children()
        assert len(children) == 2
        handed: dict[str, str] = {}
        for child in children:
            argv = child.cmdline()
            command = "worker" if "worker" in argv else "router"
            assert argv[-1] == command  # no setting flags on a child's command line
            assert not any(s.decode() in arg for arg in argv for s in (SECRET, TURN_SECRET))
            handed[command] = child.environ()[SETTINGS_ENV]
            if command == "worker":  # each secret in its own variable
                assert child.environ()[tokens.SECRET_ENV] == SECRET.decode()
                assert child.environ()[ice.SECRET_ENV] == TURN_SECRET.decode()
        for text in handed.values():
            assert SECRET.decode() not in text and TURN_SECRET.decode() not in text
        assert '"token_secret":null' in handed["worker"]
        assert '"turn_secret":null' in handed["worker"]
        assert '"turn_uris":["turn:127.0.0.1:3478"]' in handed["worker"]
        monkeypatch.setenv(ice.SECRET_ENV, TURN_SECRET.decode())  # as the worker has it
        worker = settings.decode(handed["worker"], WorkerSettings)
        assert worker.ping_interval == 0.3 and worker.limits.rate == 7
        assert worker.link.heartbeat_interval == 0.1
        router = settings.decode(handed["router"], RouterSettings)
        assert router.heartbeat_interval == 0.1 and router.expected_workers == 1
        assert router.bind == worker.link.endpoint
        # --log-level before the command, as it once had to be, still sets every process's.
        assert worker.log.level == router.log.level == "DEBUG"

        # The worker runs with them: tokens are required, and pings come every 0.3 s.
        token = tokens.mint(SECRET, "r", 60)
        with RawWebSocket.connect(port, f"?room=r&token={token}") as ws:
            event = ws.recv_json()
            assert event["type"] == "joined"
            turn, stun = event["iceServers"]
            assert turn["urls"] == ["turn:127.0.0.1:3478"]
            assert stun == {"urls": ["stun:127.0.0.1:3478"]}
            expires, _, peer_id = turn["username"].partition(":")
            made = ice.turn_credentials(TURN_SECRET, peer_id, int(expires))
            assert made == (turn["username"], turn["credential"])  # with the TURN secret
            started = time.monotonic()
            assert ws.recv_frame_raw(timeout=5).opcode == PING
            assert time.monotonic() - started < 2  # the default interval is 20 s
    finally:
        stop(serve)
    assert SECRET.decode() not in log.read_text()
    assert TURN_SECRET.decode() not in log.read_text()
