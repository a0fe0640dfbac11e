"""ICE servers for joining peers: TURN REST API credentials, the iceServers list, its settings.

The credential is checked against a value computed by another HMAC
implementation (``openssl dgst -sha1 -hmac``); tests/test_turn_coturn.py
checks that coturn itself accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from pathlib import Path

import msgspec
import pytest

from mcp_tornado import cli, ice, protocol, settings
from mcp_tornado.ice import IceServers, turn_credentials
from mcp_tornado.protocol import IceServer
from mcp_tornado.settings import IceSettings, WorkerSettings

SECRET = b"ice-test-secret-0123456789"
NOW = 1_800_000_000.0
TURN = ("turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp")
STUN = ("stun:stun.example.com:3478",)


def test_the_credential_is_base64_hmac_sha1_of_the_username_known_answer() -> None:
    # printf '%s' "1700000000:peer-a" | openssl dgst -sha1 -hmac "known-answer-secret-0123" \
    #   -binary | base64
    username, credential = turn_credentials(b"known-answer-secret-0123", "peer-a", 1_700_000_000)
    assert username == "1700000000:peer-a"
    assert credential == "YZqg7STxqxn3s2O09LYy2LAneiQ="


def _servers(**fields: object) -> IceServers:
    return IceServers(IceSettings(**fields), clock=lambda: NOW)  # type: ignore[arg-type]


def test_nothing_configured_means_no_ice_servers() -> None:
    assert _servers().for_peer() is None
    assert IceServers(IceSettings()).for_peer() is None


def test_stun_alone_is_one_entry_of_urls_the_same_for_every_peer() -> None:
    servers = _servers(stun_uris=("stun:a.example:3478, stuns:b.example", "stun:[::1]:19302"))
    listed = servers.for_peer()
    assert msgspec.json.decode(msgspec.json.encode(listed)) == [
        {"urls": ["stun:a.example:3478", "stuns:b.example", "stun:[::1]:19302"]}
    ]
    assert servers.for_peer() == listed


def test_turn_entries_carry_a_fresh_time_limited_credential_per_peer() -> None:
    servers = _servers(turn_uris=TURN, stun_uris=STUN, turn_secret=SECRET, turn_ttl=600)
    first, second = servers.for_peer(), servers.for_peer()
    assert first is not None and second is not None
    turn, stun = first
    assert turn.urls == list(TURN) and stun == IceServer(list(STUN))
    assert turn.username is not None and turn.credential is not None
    expires, _, peer_id = turn.username.partition(":")
    assert int(expires) == int(NOW) + 600
    assert re.fullmatch(r"[0-9a-f]{16}", peer_id)
    expected = hmac.new(SECRET, turn.username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(turn.credential) == expected
    # Another join (the room's other peer, or a peer on another worker): another username.
    assert second[0].username != turn.username and second[0].credential != turn.credential
    assert len({servers.for_peer()[0].username for _ in range(1000)}) == 1000  # type: ignore[index]


def test_joined_carries_ice_servers_only_when_there_are_some() -> None:
    bare = protocol.encode_event(protocol.Joined("r", 1, False))
    assert json.loads(bare) == {"type": "joined", "room": "r", "peers": 1, "initiator": False}
    servers = _servers(turn_uris=TURN[:1], stun_uris=STUN, turn_secret=SECRET)
    frame = json.loads(
        protocol.encode_event(protocol.Joined("r", 2, True, ice_servers=servers.for_peer()))
    )
    assert list(frame) == ["type", "room", "peers", "initiator", "iceServers"]
    turn, stun = frame["iceServers"]
    assert set(turn) == {"urls", "username", "credential"} and turn["urls"] == list(TURN[:1])
    assert stun == {"urls": list(STUN)}


# --- settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "turn:turn.example.com",
        "turn:turn.example.com:3478",
        "turn:10.0.0.1:3478?transport=udp",
        "turns:turn.example.com:5349?transport=tcp",
        "turn:[2001:db8::1]:3478?transport=tcp",
    ],
)
def test_good_turn_uris_are_taken(uri: str) -> None:
    assert IceSettings(turn_uris=(uri,), turn_secret=SECRET).turn_uris == (uri,)


@pytest.mark.parametrize(
    "uri",
    [
        "stun:turn.example.com",  # the wrong scheme for --turn-uri
        "turn://turn.example.com",
        "http://turn.example.com",
        "turn:",
        "turn:host:0",
        "turn:host:70000",
        "turn:host:port",
        "turn:host?transport=sctp",
        "turn:host?transport=udp&x=1",
        "turn:user@host",
        "turn:ho st",
        "turn:-host",
    ],
)
def test_bad_turn_uris_are_refused_naming_the_flag(uri: str) -> None:
    with pytest.raises(ValueError, match=r"^--turn-uri: .* is not a valid URI"):
        IceSettings(turn_uris=(uri,), turn_secret=SECRET)


@pytest.mark.parametrize(
    "uri", ["turn:stun.example.com", "stun:host?transport=udp", "stun:host:99999", "stun"]
)
def test_bad_stun_uris_are_refused_naming_the_flag(uri: str) -> None:
    with pytest.raises(ValueError, match=r"^--stun-uri: "):
        IceSettings(stun_uris=(uri,))


def test_turn_needs_a_secret_and_a_secret_needs_turn() -> None:
    with pytest.raises(ValueError, match="--turn-uri needs the TURN secret"):
        IceSettings(turn_uris=TURN)
    with pytest.raises(ValueError, match="no --turn-uri"):
        IceSettings(turn_secret=SECRET)
    with pytest.raises(ValueError, match="no --turn-uri"):
        IceSettings(stun_uris=STUN, turn_secret=SECRET)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        IceSettings(turn_uris=TURN, turn_secret=b"short")
    with pytest.raises(ValueError, match="--turn-ttl"):
        IceSettings(turn_ttl=0)
    assert IceSettings().turn_ttl == 6 * 3600


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        cli.parse_settings(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("mcp-tornado: ") and err.count("\n") == 1, err
    return err


def test_the_command_line_refuses_bad_ice_settings_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ice.SECRET_ENV, raising=False)
    secret_file = tmp_path / "turn-secret"
    secret_file.write_bytes(SECRET + b"\n")
    assert "--turn-uri" in _fails(["worker", "--turn-uri", "turn:a?transport=x"], capsys)
    assert "--stun-uri" in _fails(["serve", "--stun-uri", "stun:"], capsys)
    assert "needs the TURN secret" in _fails(["serve", "--turn-uri", "turn:a"], capsys)
    assert "no --turn-uri" in _fails(["worker", "--turn-secret-file", str(secret_file)], capsys)
    assert "/nowhere" in _fails(
        ["worker", "--turn-uri", "turn:a", "--turn-secret-file", "/nowhere"], capsys
    )
    monkeypatch.setenv(ice.SECRET_ENV, "x" * 20)
    assert "no --turn-uri" in _fails(["serve"], capsys)


def test_the_secret_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ice.SECRET_ENV, raising=False)
    secret_file = tmp_path / "turn-secret"
    secret_file.write_bytes(SECRET + b"\n")
    parsed = cli.parse_settings(
        ["worker", "--turn-uri", "turn:a:3478", "--turn-uri", "turn:b,turns:c",
         "--stun-uri", "stun:d", "--turn-secret-file", str(secret_file), "--turn-ttl", "60"]
    )  # fmt: skip
    assert isinstance(parsed, WorkerSettings)
    assert parsed.ice == IceSettings(("turn:a:3478", "turn:b,turns:c"), ("stun:d",), SECRET, 60)
    assert SECRET.decode() not in repr(parsed)
    monkeypatch.setenv(ice.SECRET_ENV, SECRET.decode())
    parsed = cli.parse_settings(["worker", "--turn-uri", "turn:a"])
    assert isinstance(parsed, WorkerSettings) and parsed.ice.turn_secret == SECRET


def test_a_child_gets_the_turn_uris_in_its_settings_and_the_secret_from_its_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = WorkerSettings(ice=IceSettings(TURN, STUN, SECRET, 60))
    text = settings.encode(worker)
    assert SECRET.decode() not in text and '"turn_secret":null' in text
    monkeypatch.setenv(ice.SECRET_ENV, SECRET.decode())
    assert settings.decode(text, WorkerSettings) == worker
    monkeypatch.delenv(ice.SECRET_ENV)
    with pytest.raises(ValueError, match="--turn-uri needs the TURN secret"):
        settings.decode(text, WorkerSettings)
