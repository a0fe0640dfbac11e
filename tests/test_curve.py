"""CurveZMQ on the router link: key files, the settings' policy, and real handshakes on 127.0.0.1.

A router thread with CURVE on a tcp:// port, and DEALERs (raw, or a worker's
:class:`~mcp_tornado.router_link.RouterLink`) with allowed, unknown and wrong
keys: who gets a ``Welcome``, and what each side logs.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from mcp_tornado import cli, curve, wire
from mcp_tornado.router.broker import Router
from mcp_tornado.router_link import RouterLink
from mcp_tornado.settings import LinkSettings, RouterSettings, ServeSettings, decode, encode
from tests.support import free_port


class Keys:
    """A router's pair, an allowed worker's pair and an unknown one, in ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.router_public, self.router_secret = curve.create_keys(tmp / "router", "router")
        self.worker_public, self.worker_secret = curve.create_keys(tmp / "web1", "web1")
        self.stranger_public, self.stranger_secret = curve.create_keys(tmp / "evil", "evil")
        self.allowed = tmp / "allowed"
        self.allowed.mkdir()
        shutil.copy(self.worker_public, self.allowed)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


# --- keys and settings ------------------------------------------------------------


def test_keys_command_writes_a_private_pair_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["keys", str(tmp_path / "k"), "--name", "web1"])
    assert done.value.code == 0
    secret = tmp_path / "k" / "web1.key_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert "--curve-allowed-dir" in capsys.readouterr().out
    pair = curve.load_key_pair(secret)
    assert curve.load_public_key(tmp_path / "k" / "web1.key") == pair.public
    with pytest.raises(SystemExit) as again:
        cli.main(["keys", str(tmp_path / "k"), "--name", "web1"])
    assert again.value.code == 2
    assert "already exists" in capsys.readouterr().err
    assert curve.load_key_pair(secret) == pair


def test_a_tcp_link_needs_keys_or_insecure(keys: Keys) -> None:
    with pytest.raises(ValueError, match="crosses a network"):
        RouterSettings(bind="tcp://0.0.0.0:5555")
    with pytest.raises(ValueError, match="crosses a network"):
        LinkSettings("tcp://10.0.0.5:5555")
    with pytest.raises(ValueError, match="crosses a network"):
        ServeSettings(router_endpoint="tcp://127.0.0.1:5555")  # loopback too
    RouterSettings(bind="tcp://127.0.0.1:5555", insecure=True)
    RouterSettings(bind="ipc:///tmp/x.ipc")  # no keys: the folder guards it
    RouterSettings(
        bind="tcp://0.0.0.0:5555",
        curve_secret_key_file=keys.router_secret,
        curve_allowed_dir=keys.allowed,
    )
    LinkSettings(
        "tcp://10.0.0.5:5555",
        curve_secret_key_file=keys.worker_secret,
        curve_server_key_file=(keys.router_public,),
    )


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing", "cannot read"),
        ("public-as-secret", "holds no secret key"),
        ("readable", "readable by others"),
        ("garbage", "not a CURVE certificate"),
        ("insecure-too", "not both"),
        ("half", "CURVE needs --curve-server-key-file too"),
    ],
)
def test_bad_key_settings_stop_with_one_line_and_status_2(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str, message: str
) -> None:
    secret = keys.worker_secret
    extra: list[str] = ["--curve-server-key-file", str(keys.router_public)]
    if problem == "missing":
        secret = tmp_path / "nope.key_secret"
    elif problem == "public-as-secret":
        secret = keys.worker_public
        secret.chmod(0o600)
    elif problem == "readable":
        secret.chmod(0o644)
    elif problem == "garbage":
        secret = tmp_path / "garbage"
        secret.write_text("hello\n")
        secret.chmod(0o600)
    elif problem == "insecure-too":
        extra.append("--insecure")
    elif problem == "half":
        extra = []
    argv = ["worker", "--router", "tcp://10.0.0.5:5555", "--curve-secret-key-file", str(secret)]
    with pytest.raises(SystemExit) as done:
        cli.parse_settings([*argv, *extra])
    assert done.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0], err


def test_the_settings_json_for_a_child_holds_key_paths_never_keys(keys: Keys) -> None:
    settings = RouterSettings(
        bind="tcp://0.0.0.0:5555",
        curve_secret_key_file=keys.router_secret,
        curve_allowed_dir=keys.allowed,
    )
    text = encode(settings)
    assert str(keys.router_secret) in text
    assert curve.load_key_pair(keys.router_secret).secret.decode() not in text
    assert decode(text, RouterSettings) == settings


# --- handshakes -----------------------------------------------------------------------


@pytest.fixture
def curve_router(keys: Keys) -> Iterator[str]:
    """A router with CURVE on 127.0.0.1:PORT, run in a thread; yields its endpoint."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    router = Router(
        RouterSettings(
            bind=endpoint,
            curve_secret_key_file=keys.router_secret,
            curve_allowed_dir=keys.allowed,
            resync_grace=0.0,
        )
    )
    router.bind()
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    yield endpoint
    router.stop()
    thread.join(10)
    assert not thread.is_alive()


def dealer(
    endpoint: str, secret_file: Path, server_file: Path, name: bytes = b"w1"
) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    """A raw worker DEALER set up as the link does, and its monitor socket."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, name)
    curve.secure_dealer(sock, *curve.link_keys(secret_file, server_file))
    monitor = sock.get_monitor_socket(curve.HANDSHAKE_FAILURES | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    sock.connect(endpoint)
    return sock, monitor


def close(sock: zmq.Socket[bytes], monitor: zmq.Socket[bytes]) -> None:
    sock.disable_monitor()
    monitor.close(0)
    sock.close(0)


def welcomed(sock: zmq.Socket[bytes], seconds: float) -> bool:
    try:  # a DEALER whose handshake failed has no pipe to send into: never block on it
        sock.send(wire.encode_batch([wire.Hello([])]), zmq.NOBLOCK)
    except zmq.Again:
        return False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sock.poll(100):
            batch = wire.decode_to_worker(sock.recv())
            if any(type(m) is wire.Welcome for m in batch):
                return True
    return False


def first_event(monitor: zmq.Socket[bytes], seconds: float) -> int:
    if not monitor.poll(int(seconds * 1000)):
        return 0
    return int(recv_monitor_message(monitor)["event"])


def test_an_allowed_worker_is_welcomed(keys: Keys, curve_router: str) -> None:
    sock, monitor = dealer(curve_router, keys.worker_secret, keys.router_public)
    try:
        assert first_event(monitor, 20) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        assert welcomed(sock, 20)
    finally:
        close(sock, monitor)


def test_an_unknown_key_is_refused_and_the_router_says_why(
    keys: Keys, curve_router: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    sock, monitor = dealer(curve_router, keys.stranger_secret, keys.router_public)
    try:
        assert first_event(monitor, 20) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert not welcomed(sock, 1.0)
    finally:
        close(sock, monitor)
    stranger = curve.load_public_key(keys.stranger_public).decode()
    refusals = [r.getMessage() for r in caplog.records if stranger in r.getMessage()]
    assert len(refusals) == 1, refusals  # once, however often it retried
    assert "refused a worker from 127.0.0.1" in refusals[0]


def test_a_key_added_to_the_allowed_dir_works_without_a_restart(
    keys: Keys, curve_router: str
) -> None:
    shutil.copy(keys.stranger_public, keys.allowed)
    sock, monitor = dealer(curve_router, keys.stranger_secret, keys.router_public)
    try:
        assert first_event(monitor, 20) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    finally:
        close(sock, monitor)


def test_a_second_connection_with_a_live_workers_identity_is_ignored(
    keys: Keys, curve_router: str
) -> None:
    # ROUTER_HANDOVER is off: ZeroMQ keeps the first connection of a routing id
    # and drops what a second one sends, so an impostor (or a clash) never
    # registers and the live worker is undisturbed.
    first, first_monitor = dealer(curve_router, keys.worker_secret, keys.router_public)
    second, second_monitor = dealer(curve_router, keys.worker_secret, keys.router_public)
    try:
        assert welcomed(first, 20)
        assert first_event(second_monitor, 20) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        assert not welcomed(second, 1.0)
        assert welcomed(first, 20)
    finally:
        close(first, first_monitor)
        close(second, second_monitor)


class _Listener:
    def __getattr__(self, name: str) -> object:
        return lambda *args: None

    def registrations(self) -> list[wire.PeerRecord]:
        return []


@pytest.mark.gen_test(timeout=60)
async def test_a_worker_with_the_wrong_server_key_says_so_and_stays_not_ready(
    keys: Keys, curve_router: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    settings = LinkSettings(
        curve_router,
        heartbeat_interval=0.1,
        curve_secret_key_file=keys.worker_secret,
        curve_server_key_file=(keys.worker_public,),  # not the router's
    )
    link = RouterLink(settings, _Listener())  # type: ignore[arg-type]
    link.start()
    try:
        deadline = time.monotonic() + 30
        while not any("CURVE handshake" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no log line about the handshake"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # it keeps retrying, quietly, and never registers
        assert not link.ready
        lines = [r.getMessage() for r in caplog.records if "CURVE handshake" in r.getMessage()]
        assert len(lines) == 1 and curve_router in lines[0], lines
    finally:
        link.close()


def test_serve_hands_its_children_the_curve_settings(keys: Keys) -> None:
    settings = cli.parse_settings(
        [
            "serve",
            "--router-endpoint",
            "tcp://127.0.0.1:5555",
            "--curve-secret-key-file",
            str(keys.router_secret),
            "--curve-allowed-dir",
            str(keys.allowed),
            "--curve-server-key-file",
            str(keys.router_public),
        ]
    )
    assert isinstance(settings, ServeSettings)
    (router,), worker = settings.children(("tcp://127.0.0.1:5555",))
    assert router.curve_allowed_dir == keys.allowed
    assert worker.link.curve_secret_key_file == keys.router_secret
    assert msgspec.json.decode(encode(worker))["link"]["insecure"] is False
