"""Layered configuration (mcp_tornado.config): flags > MCP_TORNADO_* env > TOML file > defaults."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import psutil
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mcp_tornado import cli, config, ice, tokens
from mcp_tornado.config import ConfigError, Origin, resolve
from mcp_tornado.settings import (
    SETTINGS_ENV,
    Flag,
    LimitSettings,
    RouterSettings,
    ServeSettings,
    Settings,
    WorkerSettings,
    decode,
    encode,
    keys,
)
from tests.rawws import PING, RawWebSocket
from tests.support import free_port, ready, spawn, stop, wait_until

SECRET = b"config-test-secret-0123456789"
OTHER_SECRET = b"config-test-other-secret-98765"


class Toy(Settings, frozen=True):
    """A settings class with a field of every kind the machinery supports."""

    count: Annotated[int, Flag("--toy-count", "an int", low=0)] = 1
    ratio: Annotated[float, Flag("--toy-ratio", "a float", low=0, above=True)] = 0.5
    name: Annotated[str, Flag("--toy-name", "a str")] = "x"
    loud: Annotated[bool, Flag("--toy-loud", "a bool")] = False
    where: Annotated[Path | None, Flag("--toy-where", "a path")] = None
    tags: Annotated[tuple[str, ...], Flag("--toy-tag", "repeatable")] = ()
    mode: Annotated[Literal["json", "text"], Flag("--toy-mode", "a choice")] = "text"
    secret: Annotated[
        bytes | None,
        Flag(
            "--toy-secret-file",
            "a secret",
            cli_type=Path,
            load=tokens.load_secret,
            secret=True,
            secret_env=tokens.SECRET_ENV,
        ),
    ] = None


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MCP_TORNADO_* variable of the test run's own environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("MCP_TORNADO_"):
            monkeypatch.delenv(name)
    yield


def toy(argv: list[str], path: Path | None = None) -> config.Config[Toy]:
    parser = argparse.ArgumentParser()
    found = config.add_flags(parser, Toy)
    args = parser.parse_args(argv)
    return resolve(Toy, config.given_flags(found, args), path or config.config_file(args))


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- precedence ----------------------------------------------------------------------


def test_each_kind_of_setting_follows_flag_env_file_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file-secret").write_bytes(SECRET)
    (tmp_path / "env-secret").write_bytes(OTHER_SECRET)
    path = write(
        tmp_path,
        f"""
        toy_count = 2
        toy_ratio = 2
        toy_name = "file"
        toy_loud = true
        toy_where = "/file"
        toy_tag = ["file-a", "file-b"]
        toy_mode = "json"
        toy_secret_file = "{tmp_path / "file-secret"}"
        """.replace("        ", ""),
    )
    # The defaults alone, then the file alone.
    assert toy([]).settings == Toy()
    assert set(toy([]).origins.values()) == {Origin("default")}
    from_file = toy(["--config", str(path)])
    assert from_file.settings == Toy(
        2, 2.0, "file", True, Path("/file"), ("file-a", "file-b"), "json", SECRET
    )
    assert set(from_file.origins.values()) == {Origin("file", str(path))}

    # The environment beats the file.
    env = {
        "MCP_TORNADO_TOY_COUNT": "3", "MCP_TORNADO_TOY_RATIO": "3.5",
        "MCP_TORNADO_TOY_NAME": "env", "MCP_TORNADO_TOY_LOUD": "off",
        "MCP_TORNADO_TOY_WHERE": "/env", "MCP_TORNADO_TOY_TAG": "env-a, env-b,,",
        "MCP_TORNADO_TOY_MODE": "text",
        "MCP_TORNADO_TOY_SECRET_FILE": str(tmp_path / "env-secret"),
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from_env = toy(["--config", str(path)])
    assert from_env.settings == Toy(
        3, 3.5, "env", False, Path("/env"), ("env-a", "env-b"), "text", OTHER_SECRET
    )
    assert from_env.origins["toy_count"] == Origin("env", "MCP_TORNADO_TOY_COUNT")
    assert from_env.values["toy_secret_file"] == tmp_path / "env-secret"

    # Flags beat both.
    argv = [
        "--config", str(path), "--toy-count", "4", "--toy-ratio", "4.5", "--toy-name", "flag",
        "--toy-loud", "--toy-where", "/flag", "--toy-tag", "f1", "--toy-tag", "f2",
        "--toy-mode", "json", "--toy-secret-file", str(tmp_path / "file-secret"),
    ]  # fmt: skip
    from_flags = toy(argv)
    assert from_flags.settings == Toy(
        4, 4.5, "flag", True, Path("/flag"), ("f1", "f2"), "json", SECRET
    )
    assert from_flags.origins["toy_tag"] == Origin("flag", "--toy-tag")
    assert toy([*argv, "--no-toy-loud"]).settings.loud is False


def test_a_secret_from_its_own_variable_ranks_with_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret").write_bytes(SECRET)
    path = write(tmp_path, f'token_secret_file = "{tmp_path / "secret"}"\n')
    monkeypatch.setenv(tokens.SECRET_ENV, OTHER_SECRET.decode())
    loaded = resolve(WorkerSettings, {}, path)
    assert loaded.settings.limits.token_secret == OTHER_SECRET
    assert loaded.origins["token_secret_file"] == Origin("env", tokens.SECRET_ENV)
    flagged = resolve(WorkerSettings, {"token_secret_file": tmp_path / "secret"}, path)
    assert flagged.settings.limits.token_secret == SECRET
    monkeypatch.delenv(tokens.SECRET_ENV)
    assert resolve(WorkerSettings, {}, path).settings.limits.token_secret == SECRET
    assert resolve(WorkerSettings, {}).origins["token_secret_file"] == Origin("default")


def test_real_settings_follow_the_same_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        'port = 9001\nrate_limit = 7\nheartbeat_interval = 0.25\nallowed_origin = ["a.example"]\n'
        'static_dir = "/srv/client"\nworkers = 3\n',
    )
    monkeypatch.setenv("MCP_TORNADO_RATE_LIMIT", "8.5")
    monkeypatch.setenv("MCP_TORNADO_ALLOWED_ORIGIN", "b.example,c.example")
    parsed = cli.parse_settings(["serve", "--config", str(path), "--workers", "5"])
    assert isinstance(parsed, ServeSettings)
    assert parsed.workers == 5  # flag over file
    assert parsed.worker.limits.rate == 8.5  # env over file
    assert parsed.worker.limits.allowed_origins == ("b.example", "c.example")
    assert parsed.worker.port == 9001 and parsed.worker.static_dir == Path("/srv/client")
    # One key sets every setting it names, like its flag.
    assert parsed.worker.link.heartbeat_interval == parsed.router.heartbeat_interval == 0.25


def test_the_config_file_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.CONFIG_ENV, str(write(tmp_path, "port = 9002\n")))
    parsed = cli.parse_settings(["worker"])
    assert isinstance(parsed, WorkerSettings) and parsed.port == 9002
    other = write(tmp_path, "port = 9003\n", "other.toml")
    parsed = cli.parse_settings(["worker", "--config", str(other)])
    assert isinstance(parsed, WorkerSettings) and parsed.port == 9003


def test_one_file_serves_every_command(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'bind = "tcp://127.0.0.1:5999"\nrouter = "tcp://127.0.0.1:5999"\n'
        "port = 9004\ninsecure = true\n",
    )
    router = resolve(RouterSettings, {}, path)
    assert router.settings.bind == "tcp://127.0.0.1:5999"
    assert set(router.ignored) == {"router", "port"}
    worker = resolve(WorkerSettings, {}, path)
    assert worker.settings.link.endpoint == "tcp://127.0.0.1:5999" and worker.settings.port == 9004
    assert set(worker.ignored) == {"bind"}


def test_every_key_is_its_flag_and_its_variable() -> None:
    for key, shared in config.all_keys().items():
        flag = shared[0].flag
        assert flag.name == "--" + key.replace("_", "-")
        assert flag.env == "MCP_TORNADO_" + key.upper()
    assert {
        "rate_limit",
        "heartbeat_interval",
        "token_secret_file",
        "bind",
        "router",
        "workers",
    } <= set(config.all_keys())


# --- errors: one line naming the key and its source ---------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rate_limit = -1", "config.toml: rate_limit: must be 0 (off) or positive, not -1"),
        ("rate_limt = 1", "config.toml: unknown key 'rate_limt' (did you mean rate_limit?)"),
        ('port = "80"', "config.toml: port: expected an integer, not the string '80'"),
        ("port = 1.5", "config.toml: port: expected an integer, not the number 1.5"),
        ("rate_limit = true", "config.toml: rate_limit: expected a number, not the boolean True"),
        (
            'allowed_origin = "a.example"',
            "config.toml: allowed_origin: expected an array of strings",
        ),
        ("allowed_origin = [1]", "config.toml: allowed_origin: expected an array of strings"),
        (
            "[worker]\nport = 1",
            "config.toml: unknown key 'worker' (did you mean workers?); keys are flat",
        ),
        ("port = ", "config.toml: not valid TOML: "),
        ('allowed_host = ["a b"]', "config.toml: allowed_host: not a host: 'a b'"),
        ("rate_burst = 0", "config.toml: rate_burst: must be at least 1, not 0"),
        (
            'token_secret_file = "/nonexistent/s"',
            "config.toml: token_secret_file: cannot read /nonexistent/s",
        ),
        (
            'static_dir = ""',
            "config.toml: static_dir: expected a path (a string), not the string ''",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key(
    text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as raised:
        resolve(ServeSettings, {}, Path("config.toml"))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RATE_LIMIT", "-1", "must be 0 (off) or positive"),
        ("RATE_LIMIT", "fast", "expected a number, not 'fast'"),
        ("PORT", "80.5", "expected an integer, not '80.5'"),
        ("RATE_LIMT", "1", "no such setting (did you mean MCP_TORNADO_RATE_LIMIT?)"),
        ("ALLOWED_ORIGIN", "a b", "not an origin: 'a b'"),
        ("TOKEN_SECRET", "short", "the token secret must be at least 16"),
        ("TOKEN_SECRET_FILE", "/nonexistent/s", "cannot read /nonexistent/s"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(
    name: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"MCP_TORNADO_{name}", value)
    with pytest.raises(ConfigError) as raised:
        resolve(ServeSettings, {})
    assert str(raised.value).startswith(f"$MCP_TORNADO_{name}: {message}"), raised.value


def test_bad_booleans_and_choices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MCP_TORNADO_TOY_LOUD", "maybe")
    with pytest.raises(ConfigError, match=r"^\$MCP_TORNADO_TOY_LOUD: expected true or false"):
        toy([])
    monkeypatch.setenv("MCP_TORNADO_TOY_LOUD", "YES")
    assert toy([]).settings.loud is True
    monkeypatch.setenv("MCP_TORNADO_TOY_MODE", "xml")
    with pytest.raises(
        ConfigError, match=r"^\$MCP_TORNADO_TOY_MODE: expected one of 'json', 'text'"
    ):
        toy([])
    monkeypatch.delenv("MCP_TORNADO_TOY_MODE")
    monkeypatch.delenv("MCP_TORNADO_TOY_LOUD")
    with pytest.raises(ConfigError, match="toy_loud: expected true or false, not the string 'yes'"):
        toy([], write(tmp_path, 'toy_loud = "yes"\n'))


def test_internal_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in config.INTERNAL_ENV | {tokens.SECRET_ENV}:
        monkeypatch.setenv(name, "0123456789abcdef0123" if name == tokens.SECRET_ENV else "x")
    monkeypatch.setenv("MCP_TORNADO_PORT", "")  # empty: unset
    assert resolve(WorkerSettings, {}).settings.port == 8000


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it: No such file or directory"):
        resolve(WorkerSettings, {}, tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read it: Is a directory"):
        resolve(WorkerSettings, {}, tmp_path)
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe port = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve(WorkerSettings, {}, tmp_path / "binary.toml")


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MCP_TORNADO_")}
    return subprocess.run(
        [sys.executable, "-m", "mcp_tornado", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


@pytest.mark.parametrize("command", ["serve", "worker", "router", "config"])
def test_bad_configuration_stops_every_command_with_status_2(command: str, tmp_path: Path) -> None:
    path = write(tmp_path, "heartbeat_liveness = 0\n")
    done = run_cli(command, "--config", str(path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"mcp-tornado: {path}: heartbeat_liveness: must be at least 1, not 0"
    ]
    done = run_cli(command, env={"MCP_TORNADO_HEARTBEAT_LIVENES": "2"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "did you mean MCP_TORNADO_HEARTBEAT_LIVENESS?" in done.stderr


_toml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from([*config.all_keys(), "nope", "rate"]),
    value=_toml_values,
)
def test_any_file_value_is_accepted_or_one_config_error(
    key: str, value: Any, tmp_path: Path
) -> None:
    shown = "{ a = 1 }" if value is None else config.toml_value(value)  # None: a table
    path = write(tmp_path, f"{key} = {shown}\n")
    try:
        resolve(ServeSettings, {}, path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from([*config.all_keys(), "nope"]),
    value=st.text(st.characters(exclude_characters="\x00"), max_size=30),
)
def test_any_variable_is_accepted_or_one_config_error(key: str, value: str) -> None:
    name = "MCP_TORNADO_" + key.upper()
    try:
        resolve(ServeSettings, {}, environ={name: value})
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"${name}: "), exc


def test_raw_bytes_are_not_a_config_and_never_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "noise.toml"
    path.write_bytes(bytes(range(256)) * 4)
    done = run_cli("worker", "--config", str(path))
    assert done.returncode == 2 and done.stderr.startswith(f"mcp-tornado: {path}: not valid TOML")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


# --- mcp-tornado config ----------------------------------------------------------------


def print_config(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as stopped:
        cli.main(["config", *argv])
    assert stopped.value.code == 0
    return out.getvalue()


def test_config_prints_each_value_and_its_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, 'rate_limit = 7\nbind = "tcp://127.0.0.1:5999"\n')
    monkeypatch.setenv("MCP_TORNADO_PORT", "9005")
    monkeypatch.setenv(tokens.SECRET_ENV, SECRET.decode())
    text = print_config("--config", str(path), "--hwm", "5")
    lines = text.splitlines()
    assert "hwm = 5  # from flag --hwm" in lines
    assert "port = 9005  # from env MCP_TORNADO_PORT" in lines
    assert f"rate_limit = 7.0  # from file {path}" in lines
    assert "rate_burst = 200  # default" in lines
    assert (
        f"# token_secret_file: secret <set>, from env {tokens.SECRET_ENV} (never written here)"
        in lines
    )
    assert f"# bind: ignored by serve (from file {path})" in lines
    assert SECRET.decode() not in text
    assert tomllib.loads(text)["port"] == 9005
    monkeypatch.delenv(tokens.SECRET_ENV)
    assert "# token_secret_file: secret not set" in print_config().splitlines()


def test_config_output_fed_back_gives_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret").write_bytes(SECRET)
    path = write(
        tmp_path, 'allowed_host = ["signal.example.com", "*.example.org"]\nmax_backlog = 99\n'
    )
    monkeypatch.setenv("MCP_TORNADO_SHUTDOWN_TIMEOUT", "2.5")
    monkeypatch.setenv("MCP_TORNADO_TOKEN_SECRET_FILE", str(tmp_path / "secret"))
    argv = [
        "--config",
        str(path),
        "--router-endpoint",
        'ipc:///tmp/é "q"\t.ipc',
        "--allowed-origin",
        "a.example",
    ]
    first = cli.parse_settings(["serve", *argv])
    printed = write(tmp_path, print_config(*argv), "printed.toml")
    for name in ("MCP_TORNADO_SHUTDOWN_TIMEOUT", "MCP_TORNADO_TOKEN_SECRET_FILE"):
        monkeypatch.delenv(name)
    again = cli.parse_settings(["serve", "--config", str(printed)])
    assert again == first
    assert again.worker.limits.token_secret == SECRET  # type: ignore[attr-defined]
    assert (
        f'token_secret_file = "{tmp_path / "secret"}"  # secret <set>, from env'
        in printed.read_text()
    )


def test_config_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tokens.SECRET_ENV, SECRET.decode())
    shown = msgspec.json.decode(print_config("--json", "--port", "9006"))
    assert shown["port"] == {"value": 9006, "source": "flag", "from": "--port"}
    assert shown["token_secret_file"] == {
        "value": "<set>",
        "source": "env",
        "from": tokens.SECRET_ENV,
    }
    assert shown["rate_limit"] == {"value": 50.0, "source": "default", "from": None}


# --- serve's children take exactly serve's settings ----------------------------------------


def test_a_child_ignores_the_layers_when_handed_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(SETTINGS_ENV, encode(WorkerSettings(port=1234)))
    monkeypatch.setenv("MCP_TORNADO_PORT", "5678")  # inherited from serve's environment
    monkeypatch.setenv(config.CONFIG_ENV, str(write(tmp_path, "port = 999\n")))
    parsed = cli.parse_settings(["worker"])
    assert isinstance(parsed, WorkerSettings) and parsed.port == 1234
    with pytest.raises(SystemExit):
        cli.parse_settings(["worker", "--config", str(tmp_path / "config.toml")])
    assert SETTINGS_ENV in capsys.readouterr().err


def test_serve_hands_children_the_effective_settings_and_no_secret(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    port = free_port()
    path = write(
        tmp_path,
        f'token_secret_file = "{secret_file}"\nrate_limit = 7\nping_interval = 30\n'
        "heartbeat_interval = 0.1\nheartbeat_liveness = 10\nshutdown_timeout = 3\n",
    )
    env = {
        "MCP_TORNADO_WORKERS": "1",
        "MCP_TORNADO_PORT": str(port),
        "MCP_TORNADO_RATE_LIMIT": "9",  # env over file
        "MCP_TORNADO_PING_INTERVAL": "40",  # the flag below wins
        tokens.SECRET_ENV: OTHER_SECRET.decode(),  # env over the file's token_secret_file
    }
    serve = spawn(
        "serve",
        "--config",
        str(path),
        "--ping-interval",
        "0.3",
        log=tmp_path / "serve.log",
        env=env,
    )
    try:
        wait_until(lambda: ready(port), 30, "serve to answer")
        children = psutil.Process(serve.pid).children()
        assert len(children) == 2
        for child in children:
            cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0")
            assert cmdline[-2] in (b"worker", b"router")  # nothing after the command
            assert not any(s in b" ".join(cmdline) for s in (SECRET, OTHER_SECRET, b"--config"))
            environ = child.environ()
            assert SECRET.decode() not in environ[SETTINGS_ENV]
            assert OTHER_SECRET.decode() not in environ[SETTINGS_ENV]
            if b"worker" in cmdline:
                worker = decode(environ[SETTINGS_ENV], WorkerSettings)
                assert environ[tokens.SECRET_ENV] == OTHER_SECRET.decode()  # env over file
        assert worker.limits.rate == 9 and worker.ping_interval == 0.3
        assert worker.link.heartbeat_interval == 0.1 and worker.shutdown_timeout == 3

        # The worker runs with them: the env's secret, and pings every 0.3 s (not 40 s).
        with RawWebSocket.connect(
            port, f"?room=r&token={tokens.mint(OTHER_SECRET, 'r', 60)}"
        ) as ws:
            assert ws.recv_json()["type"] == "joined"
            started = time.monotonic()
            assert ws.recv_frame_raw(timeout=10).opcode == PING
            assert time.monotonic() - started < 5
        with RawWebSocket.connect(port, f"?room=r&token={tokens.mint(SECRET, 'r', 60)}") as ws:
            assert ws.recv_json()["code"] == "invalid_token"
    finally:
        stop(serve)
    log = (tmp_path / "serve.log").read_text()
    assert SECRET.decode() not in log and OTHER_SECRET.decode() not in log


def test_secrets_env_names_every_secret_even_unset() -> None:
    from mcp_tornado.settings import secrets_env

    assert secrets_env(WorkerSettings()) == {tokens.SECRET_ENV: "", ice.SECRET_ENV: ""}
    with_secret = WorkerSettings(limits=LimitSettings(token_secret=SECRET))
    assert secrets_env(with_secret) == {tokens.SECRET_ENV: SECRET.decode(), ice.SECRET_ENV: ""}
    assert secrets_env(RouterSettings()) == {}


def test_every_command_has_the_keys_of_its_settings() -> None:
    parser = cli._parser()
    for command, cls in config.COMMANDS.items():
        assert parser.commands[command].keys.keys() == keys(cls).keys()


def test_config_for_another_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "port = 9007\nexpected_workers = 2\n")
    worker = print_config(
        "--for", "worker", "--config", str(path), "--router", "tcp://h:1", "--insecure"
    )
    assert 'router = "tcp://h:1"  # from flag --router' in worker.splitlines()
    assert f"# expected_workers: ignored by worker (from file {path})" in worker.splitlines()
    fed_back = write(tmp_path, worker, "worker.toml")
    parsed = cli.parse_settings(["worker", "--config", str(fed_back)])
    assert isinstance(parsed, WorkerSettings) and parsed.port == 9007
    assert parsed.link.endpoint == "tcp://h:1"
    router = print_config("--for", "router", "--config", str(path))
    assert f"expected_workers = 2  # from file {path}" in router.splitlines()
    with pytest.raises(SystemExit) as stopped:
        cli.main(["config", "--bind", "tcp://h:1"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "mcp-tornado: --bind is not a setting of serve\n"


_CONFIG_FLAGS = sorted(
    flag
    for action in cli._parser().commands["config"]._actions
    for flag in action.option_strings
    if flag not in ("-h", "--help")
)


@hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    argv=st.lists(
        st.one_of(
            st.sampled_from(_CONFIG_FLAGS),
            st.text(st.characters(exclude_characters="\x00"), max_size=12),
            st.sampled_from(["0", "-1", "1e9", "nan", "tcp://h:1", "*", "", "a\nb", "--json"]),
        ),
        max_size=6,
    )
)
def test_any_command_line_prints_a_config_or_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        cli.main(["config", *argv])
    out, err = capsys.readouterr()
    if stopped.value.code == 0:
        assert (msgspec.json.decode(out) if "--json" in argv else tomllib.loads(out)) is not None
    else:
        assert stopped.value.code == 2
        assert err.startswith("mcp-tornado: ") and err.count("\n") == 1, err
