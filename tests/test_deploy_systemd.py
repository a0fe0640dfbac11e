"""deploy/systemd: the units parse, are sandboxed, and run commands, flags and keys that exist.

The single-host units (a router, worker@ instances, a target) and the units of a
deployment over several hosts: router shards (``mcp-tornado-router@I``) and a
worker host (``serve`` against the remote shards), each with its example config.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_tornado import cli, config, curve
from mcp_tornado.capacity import FD_RESERVE
from mcp_tornado.settings import (
    LimitSettings,
    RouterSettings,
    ServeSettings,
    Settings,
    WorkerSettings,
)

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
ROUTER = DEPLOY / "mcp-tornado-router.service"
WORKER = DEPLOY / "mcp-tornado-worker@.service"
TARGET = DEPLOY / "mcp-tornado.target"
EXAMPLE_CONFIG = DEPLOY / "config.toml"
SERVICES = [ROUTER, WORKER]
CONFIG_PATH = "/etc/mcp-tornado/config.toml"
SHARD = DEPLOY / "mcp-tornado-router@.service"
WORKER_HOST = DEPLOY / "mcp-tornado-worker-host.service"
HOSTS = [SHARD, WORKER_HOST]  # a deployment over several hosts: one role per host


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The units' commands are checked with no MCP_TORNADO_* variable of this test run."""
    for name in list(os.environ):
        if name.startswith("MCP_TORNADO_"):
            monkeypatch.delenv(name)


def unit(path: Path) -> configparser.ConfigParser:
    # systemd allows a key twice (SystemCallFilter=): the last one wins here, all_values() has all.
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, empty_lines_in_values=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


def all_values(path: Path, key: str) -> list[str]:
    return re.findall(rf"^{re.escape(key)}=(.*)$", path.read_text(), flags=re.MULTILINE)


def exec_start(path: Path, instance: str = "0", credentials: str = "/run/credentials") -> list[str]:
    command = unit(path)["Service"]["ExecStart"].replace("%i", instance)
    return shlex.split(command.replace("%d", credentials))


def test_the_units_parse() -> None:
    for path in [*SERVICES, TARGET]:
        parsed = unit(path)
        assert parsed["Unit"]["Description"], path
        assert parsed["Install"]["WantedBy"], path
    assert unit(TARGET)["Install"]["WantedBy"] == "multi-user.target"
    for path in SERVICES:
        assert unit(path)["Install"]["WantedBy"] == TARGET.name
        assert unit(path)["Unit"]["PartOf"] == TARGET.name


@pytest.mark.parametrize("path", SERVICES + HOSTS, ids=lambda p: p.name)
def test_every_service_is_sandboxed(path: Path) -> None:
    service = unit(path)["Service"]
    expected = {
        "DynamicUser": "yes",
        "User": "mcp-tornado",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in all_values(path, "SystemCallFilter")
    # Restarting cannot fix a bad configuration (2) or a child that cannot start (78).
    assert set(service["RestartPreventExitStatus"].split()) == {"2", "78"}
    assert int(service["LimitNOFILE"]) >= LimitSettings().max_connections + FD_RESERVE
    # systemd waits for the graceful shutdown (the example's and the default) before SIGKILL.
    shutdown = max(WorkerSettings().shutdown_timeout, example_worker().shutdown_timeout)
    assert float(service["TimeoutStopSec"]) > shutdown + 2


def test_router_and_workers_share_the_socket_directory() -> None:
    router, worker = unit(ROUTER)["Service"], unit(WORKER)["Service"]
    # The same dynamic user: units naming it share its uid, so workers may use the socket.
    assert router["User"] == worker["User"] and router["Group"] == worker["Group"]
    bind = exec_start(ROUTER)[exec_start(ROUTER).index("--bind") + 1]
    endpoint = exec_start(WORKER)[exec_start(WORKER).index("--router") + 1]
    assert bind == endpoint
    assert bind.startswith(f"ipc:///run/{router['RuntimeDirectory']}/")
    assert router["RuntimeDirectoryMode"] == "0700"
    assert "mcp-tornado-router.service" in unit(WORKER)["Unit"]["After"].split()
    assert "mcp-tornado-router.service" in unit(WORKER)["Unit"]["Wants"].split()


@pytest.mark.parametrize(("path", "command"), [(ROUTER, "router"), (WORKER, "worker")])
def test_exec_start_runs_a_command_with_flags_that_exist(path: Path, command: str) -> None:
    argv = exec_start(path)
    assert Path(argv[0]).name == "mcp-tornado"
    args = cli._parser().parse_args(argv[1:])  # an unknown command or flag exits here
    assert args.command == command
    assert str(args.config) == CONFIG_PATH
    assert "EnvironmentFile" in unit(path)["Service"]


def example(command: str) -> Settings:
    """The settings a unit's command runs with, given the example config file.

    A bad key or value in it exits with status 2 here.
    """
    argv = exec_start(WORKER if command == "worker" else ROUTER)
    argv[argv.index(CONFIG_PATH)] = str(EXAMPLE_CONFIG)
    return cli.parse_settings(argv[1:])


def example_worker() -> WorkerSettings:
    worker = example("worker")
    assert isinstance(worker, WorkerSettings)
    return worker


def test_the_example_config_is_valid_for_every_unit() -> None:
    router = example("router")
    assert isinstance(router, RouterSettings) and router.expected_workers == 4
    worker = example_worker()
    assert worker.port == 8000 and worker.host == "0.0.0.0"
    assert worker.link.endpoint == router.bind


def test_the_example_config_has_only_known_keys() -> None:
    import tomllib

    keys = tomllib.loads(EXAMPLE_CONFIG.read_text())
    assert keys and set(keys) <= set(config.all_keys())


def test_variables_in_the_units_and_secrets_file_exist() -> None:
    names = set(
        re.findall(r"\b(MCP_TORNADO_[A-Z_]+)=", (DEPLOY / "secrets.env.example").read_text())
    )
    for path in SERVICES + HOSTS:
        for line in all_values(path, "Environment"):
            names.update(re.findall(r"\b(MCP_TORNADO_[A-Z_]+)=", line))
    assert names and names <= config.known_env()


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # verify checks that ExecStart's program exists: point it at this checkout's.
    program = Path(sys.executable).with_name("mcp-tornado")
    if not program.exists():
        pytest.skip(f"{program} is missing: pip install -e . first")
    units = [*SERVICES, TARGET, *HOSTS]
    for path in units:
        text = path.read_text().replace("/opt/mcp-tornado/.venv/bin/mcp-tornado", str(program))
        (tmp_path / path.name).write_text(text)
    (tmp_path / "mcp-tornado-router@0.service").symlink_to(tmp_path / SHARD.name)
    named = [tmp_path / p.name for p in units if p != SHARD] + [
        tmp_path / "mcp-tornado-router@0.service"
    ]
    done = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, named)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [line for line in done.stderr.splitlines() if "mcp-tornado" in line]
    assert done.returncode == 0 and not ours, done.stderr


# --- several hosts: router shards and worker hosts -------------------------------------------


class Hosts:
    """The example configs of the router shards and a worker host, with real keys in ``tmp``.

    Every ``/etc/mcp-tornado/`` path of the examples and units is moved under
    ``tmp/etc/``, where the key pairs they name exist (a key that cannot load exits 2).
    """

    def __init__(self, tmp: Path) -> None:
        self.etc = tmp / "etc"
        keys = self.etc / "keys"
        for name in ("router-0", "router-1", "worker"):
            curve.create_keys(keys, name)
        (self.etc / "workers").mkdir(parents=True)
        shutil.copy(keys / "worker.key", self.etc / "workers" / "web1.key")
        self.credentials = tmp / "credentials"  # what LoadCredential= hands the service
        self.credentials.mkdir()
        for path in (SHARD, WORKER_HOST):
            (loaded,) = all_values(path, "LoadCredential")
            name, source = loaded.replace("%i", "0").split(":")
            shutil.copy(self.moved(source), self.credentials / name)

    def moved(self, text: str) -> str:
        return text.replace("/etc/mcp-tornado/", f"{self.etc}/")

    def settings(self, path: Path, instance: str = "0") -> Settings:
        argv = exec_start(path, instance, str(self.credentials))
        config = argv[argv.index("--config") + 1]
        example = DEPLOY / Path(config).name.replace(f"router-{instance}", "router-0")
        moved = self.etc / Path(config).name
        moved.write_text(self.moved(example.read_text()))
        argv[argv.index("--config") + 1] = str(moved)
        return cli.parse_settings(argv[1:])


@pytest.fixture
def hosts(tmp_path: Path) -> Hosts:
    return Hosts(tmp_path)


def test_the_multi_host_units_run_commands_with_flags_that_exist() -> None:
    for path, command in [(SHARD, "router"), (WORKER_HOST, "serve")]:
        argv = exec_start(path)
        assert Path(argv[0]).name == "mcp-tornado"
        args = cli._parser().parse_args(argv[1:])  # an unknown command or flag exits here
        assert args.command == command
        assert str(args.config).startswith("/etc/mcp-tornado/")
        assert unit(path)["Install"]["WantedBy"] == "multi-user.target"
        # The secret key is a credential: on disk root-only, never the service's to read.
        (loaded,) = all_values(path, "LoadCredential")
        assert f"%d/{loaded.split(':')[0]}" in unit(path)["Service"]["ExecStart"]
    assert "--shard %i" in unit(SHARD)["Service"]["ExecStart"]
    assert "%i" in all_values(SHARD, "LoadCredential")[0]  # each shard its own key pair
    assert unit(WORKER_HOST)["Service"]["KillMode"] == "mixed"  # serve stops its workers


def test_each_shard_unit_is_its_shard_with_its_own_key_pair(hosts: Hosts) -> None:
    for instance in ("0", "1"):
        router = hosts.settings(SHARD, instance)
        assert isinstance(router, RouterSettings)
        assert (router.shard, router.shards) == (int(instance), 2)
        assert router.bind.startswith("tcp://") and router.curve_allowed_dir is not None
        assert router.curve_secret_key_file == hosts.credentials / "router.key_secret"
        assert not router.insecure
    assert all_values(SHARD, "LoadCredential")[0].endswith("router-%i.key_secret")


def test_the_worker_host_runs_serve_against_every_shard_with_each_shards_key(
    hosts: Hosts,
) -> None:
    serve = hosts.settings(WORKER_HOST)
    assert isinstance(serve, ServeSettings)
    routers, worker = serve.children(serve.remote_routers)
    assert routers == ()  # no router of its own
    assert len(worker.link.endpoints) == serve.shards == 2
    assert [worker.link.server_key_file(shard) for shard in (0, 1)] == [
        Path(f"{hosts.etc}/keys/router-{shard}.key") for shard in (0, 1)
    ]
    assert worker.link.curve_secret_key_file == hosts.credentials / "worker.key_secret"
    assert (worker.host, worker.port, serve.workers) == ("0.0.0.0", 8000, 4)
    # The shards' map and the worker host's agree.
    shard = hosts.settings(SHARD)
    assert isinstance(shard, RouterSettings) and shard.shards == len(worker.link.endpoints)
    stop = float(unit(WORKER_HOST)["Service"]["TimeoutStopSec"])
    assert stop > worker.shutdown_timeout + 2 + 2  # serve: its workers, then nothing else


def test_the_multi_host_examples_have_only_known_keys() -> None:
    import tomllib

    for name in ("router-0.toml", "worker-host.toml"):
        keys = tomllib.loads((DEPLOY / name).read_text())
        assert keys and set(keys) <= set(config.all_keys()), name
