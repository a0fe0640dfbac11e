"""Signed room tokens: minting, every way a token can be wrong, and enforcement by real workers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_tornado import tokens
from mcp_tornado.tokens import TokenError
from tests.rawws import RawWebSocket
from tests.support import Cluster, free_port, ready, running_cluster, spawn, stop, wait_until

SECRET = b"test-secret-0123456789abcdef"
NOW = 1_800_000_000.0


def _error(token: str, room: str, now: float = NOW, secret: bytes = SECRET) -> str:
    with pytest.raises(TokenError) as caught:
        tokens.verify(secret, token, room, now)
    return caught.value.code


def test_a_minted_token_grants_its_room_until_it_expires() -> None:
    token = tokens.mint(SECRET, "lobby", ttl=60, peer="alice", now=NOW)
    assert tokens.verify(SECRET, token, "lobby", NOW) == ("lobby", int(NOW) + 60, "alice")
    assert tokens.verify(SECRET, token, "lobby", NOW + 59.999).room == "lobby"  # just under
    assert _error(token, "lobby", NOW + 60) == "token_expired"  # at the expiry
    assert _error(token, "lobby", NOW + 61) == "token_expired"  # just over


def test_peer_is_optional() -> None:
    token = tokens.mint(SECRET, "lobby", ttl=60, now=NOW)
    assert tokens.verify(SECRET, token, "lobby", NOW).peer is None


def test_wrong_room_and_wrong_secret_are_refused() -> None:
    token = tokens.mint(SECRET, "lobby", ttl=60, now=NOW)
    assert _error(token, "lobby2") == "invalid_token"
    assert _error(token, "lobb") == "invalid_token"
    assert _error(token, "lobby", secret=b"another-secret-0123456789") == "invalid_token"


def test_a_tampered_token_is_refused() -> None:
    token = tokens.mint(SECRET, "lobby", ttl=60, now=NOW)
    version, claims, signature = token.split(".")
    # Same signature, claims rewritten to another room and a later expiry.
    forged = base64.urlsafe_b64encode(json.dumps({"r": "vip", "e": 2**40}).encode())
    assert _error(f"{version}.{forged.decode().rstrip('=')}.{signature}", "vip") == "invalid_token"
    # One character of the signature or of the claims flipped.
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert _error(f"{version}.{claims}.{flipped}", "lobby") == "invalid_token"
    claims2 = ("A" if claims[0] != "A" else "B") + claims[1:]
    assert _error(f"{version}.{claims2}.{signature}", "lobby") == "invalid_token"


@pytest.mark.parametrize(
    "token",
    ["", "v1", "v1..", "v2.a.b", "v1.abc", "garbage", "v1.\u00e9.x", "v1." + "a" * 2000 + ".b"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert _error(token, "lobby") == "invalid_token"


def test_secrets_come_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(tokens.SECRET_ENV, raising=False)
    assert tokens.load_secret() is None
    monkeypatch.setenv(tokens.SECRET_ENV, SECRET.decode())
    assert tokens.load_secret() == SECRET
    path = tmp_path / "secret"
    path.write_bytes(b"file-secret-0123456789\n")
    assert tokens.load_secret(path) == b"file-secret-0123456789"
    path.write_bytes(b"short\n")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        tokens.load_secret(path)


def test_token_subcommand_mints_a_token(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    env = {k: v for k, v in os.environ.items() if k != tokens.SECRET_ENV}
    argv = [sys.executable, "-m", "mcp_tornado", "token", "lobby", "--ttl", "60", "--peer", "bob"]
    out = subprocess.run(
        [*argv, "--token-secret-file", str(path)], env=env, capture_output=True, check=True
    )
    grant = tokens.verify(SECRET, out.stdout.decode().strip(), "lobby")
    assert grant.peer == "bob" and grant.expires <= time.time() + 60
    env[tokens.SECRET_ENV] = SECRET.decode()
    out = subprocess.run(argv, env=env, capture_output=True, check=True)
    assert tokens.verify(SECRET, out.stdout.decode().strip(), "lobby").peer == "bob"
    del env[tokens.SECRET_ENV]
    refused = subprocess.run(argv, env=env, capture_output=True)
    assert refused.returncode != 0 and b"no secret" in refused.stderr


# --- enforced by a real worker --------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("tokens")
    with running_cluster(tmp, 1, env={tokens.SECRET_ENV: SECRET.decode()}) as cluster:
        yield cluster


def room() -> str:
    return f"tok-{uuid.uuid4().hex[:8]}"


def refused_with(cluster: Cluster, query: str) -> tuple[str, int | None]:
    with RawWebSocket.connect(cluster.ports[0], query) as ws:
        error = ws.recv_json()
        assert error["type"] == "error", error
        return error["code"], ws.wait_closed()


def test_valid_tokens_join_and_relay(secured: Cluster) -> None:
    name = room()
    a_token = tokens.mint(SECRET, name, ttl=60, peer="a")
    b_token = tokens.mint(SECRET, name, ttl=60)
    with (
        RawWebSocket.connect(secured.ports[0], f"?room={name}&token={a_token}") as a,
        RawWebSocket.connect(secured.ports[0], f"?token={b_token}&room={name}") as b,
    ):
        assert a.recv_json()["type"] == "joined"
        assert b.recv_json()["type"] == "joined"
        b.send_json({"type": "offer", "sdp": "x"})
        assert a.recv_type("offer") == {"type": "offer", "sdp": "x"}


def test_missing_wrong_expired_and_tampered_tokens_are_refused(secured: Cluster) -> None:
    name = room()
    good = tokens.mint(SECRET, name, ttl=60)
    expired = tokens.mint(SECRET, name, ttl=60, now=time.time() - 61)
    other_room = tokens.mint(SECRET, room(), ttl=60)
    other_secret = tokens.mint(b"another-secret-0123456789", name, ttl=60)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for query, code in [
        (f"?room={name}", "invalid_token"),
        (f"?room={name}&token=", "invalid_token"),
        (f"?room={name}&token={expired}", "token_expired"),
        (f"?room={name}&token={other_room}", "invalid_token"),
        (f"?room={name}&token={other_secret}", "invalid_token"),
        (f"?room={name}&token={tampered}", "invalid_token"),
        (f"?token={good}", "invalid_token"),  # no room: "default", not the token's room
    ]:
        assert refused_with(secured, query) == (code, 4401), query


def test_serve_hands_the_secret_to_workers_off_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    port = free_port()
    server = spawn(
        "serve", "--workers", "1", "--port", str(port), "--token-secret-file", str(path),
        "--router-endpoint", f"ipc://{tmp_path}/r.ipc", "--shutdown-timeout", "2",
        log=tmp_path / "serve.log",
    )  # fmt: skip
    try:
        wait_until(lambda: ready(port), 15, "serve")
        for child in psutil.Process(server.pid).children(recursive=True):
            assert SECRET.decode() not in " ".join(child.cmdline())
        name = room()
        token = tokens.mint(SECRET, name, ttl=60)
        with RawWebSocket.connect(port, f"?room={name}&token={token}") as ws:
            assert ws.recv_json()["type"] == "joined"
        with RawWebSocket.connect(port, f"?room={name}") as ws:
            assert ws.recv_json()["code"] == "invalid_token"
    finally:
        stop(server)


@settings(deadline=None, derandomize=True, database=None, max_examples=300)
@given(token=st.text(max_size=200) | st.from_regex(r"v1\.[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,50}"))
def test_random_tokens_are_refused_never_crash(token: str) -> None:
    assert _error(token, "lobby") in {"invalid_token", "token_expired"}


@settings(deadline=None, derandomize=True, database=None, max_examples=100)
@given(room=st.text(max_size=64), ttl=st.integers(1, 10**6), peer=st.none() | st.text(max_size=20))
def test_any_room_and_peer_round_trip(room: str, ttl: int, peer: str | None) -> None:
    token = tokens.mint(SECRET, room, ttl=ttl, peer=peer, now=NOW)
    assert tokens.verify(SECRET, token, room, NOW) == (room, int(NOW) + ttl, peer)
