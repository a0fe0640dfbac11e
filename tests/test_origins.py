"""The Origin allow-list: unit rules, and refusals at the handshake of a real worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_tornado.origins import OriginPolicy, split_origins
from tests.rawws import RawWebSocket
from tests.support import Cluster, running_cluster

HOST = "signal.example.com"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (f"https://{HOST}", True),  # the server's own page
        (f"http://{HOST}", True),  # same host: scheme not compared (as Tornado does)
        (f"https://{HOST}:8443", False),  # another port is another origin
        ("http://localhost:5173", True),  # development servers, any port
        ("http://127.0.0.1:3000", True),
        ("http://[::1]:8080", True),
        ("https://localhost", True),
        ("https://evil.example.com", False),
        ("https://signal.example.com.evil.com", False),
        ("http://localhost.evil.com", False),
        ("null", False),
        ("file://", False),
        ("chrome-extension://abc", False),
        ("", False),
        ("not a url", False),
        ("http://x:notaport", False),
    ],
)
def test_default_policy(origin: str, allowed: bool) -> None:
    assert OriginPolicy().allows(origin, HOST) is allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://app.example.com:443", True),  # the default port, spelled out
        ("http://app.example.com", False),  # wrong scheme
        ("https://app.example.com:444", False),  # wrong port
        ("https://a.partner.org", True),  # subdomain wildcard
        ("https://a.b.partner.org", True),
        ("https://partner.org", False),  # the wildcard does not cover the apex
        ("https://evilpartner.org", False),
        ("http://tools.internal:9000", True),  # bare host:port, any scheme
        ("https://tools.internal:9000", True),
        ("http://tools.internal:9001", False),
        ("http://localhost:5173", False),  # an explicit list replaces the localhost default
        (f"https://{HOST}", True),  # the server's own page stays allowed
        ("null", True),
    ],
)
def test_configured_policy(origin: str, allowed: bool) -> None:
    policy = OriginPolicy(
        ["https://app.example.com", "https://*.partner.org,tools.internal:9000", "null"]
    )
    assert policy.allows(origin, HOST) is allowed


def test_star_allows_everything() -> None:
    policy = OriginPolicy(["*"])
    assert policy.allows("https://anything.example", HOST)
    assert policy.allows("null", HOST)


def test_bad_entries_are_refused_at_startup() -> None:
    for entry in ["not an origin", "https://", "https://a.com/path", "http://a.com:x"]:
        with pytest.raises(ValueError):
            OriginPolicy([entry])


def test_split_origins() -> None:
    assert split_origins(["a.com, b.com", "c.com", " ,"]) == ("a.com", "b.com", "c.com")


# --- at the handshake of a real worker ---------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("origins")
    with running_cluster(tmp, 1, "--allowed-origin", "https://app.example.com") as cluster:
        yield cluster


def status(cluster: Cluster, headers: dict[str, str]) -> int:
    query = f"/ws/signal/?room=o-{uuid.uuid4().hex[:8]}"
    ws = RawWebSocket.handshake(cluster.ports[0], query, headers=headers)
    ws.close()
    return ws.status


def test_allowed_origin_connects(guarded: Cluster) -> None:
    assert status(guarded, {"Origin": "https://app.example.com"}) == 101
    port = guarded.ports[0]
    assert status(guarded, {"Origin": f"http://127.0.0.1:{port}"}) == 101  # same host


def test_refused_origins_get_403(guarded: Cluster) -> None:
    assert status(guarded, {"Origin": "https://evil.example.com"}) == 403
    assert status(guarded, {"Origin": "http://localhost:5173"}) == 403
    assert status(guarded, {"Origin": "null"}) == 403
    evil = {"Origin": "https://evil.example.com", "Sec-Fetch-Site": "cross-site"}
    assert status(guarded, evil) == 403


def test_no_origin_header_is_a_bot_and_is_allowed(guarded: Cluster) -> None:
    assert status(guarded, {}) == 101


def test_default_policy_at_a_real_worker(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1) as cluster:
        assert status(cluster, {"Origin": "http://localhost:5173"}) == 101
        assert status(cluster, {"Origin": "https://evil.example.com"}) == 403


@settings(deadline=None, derandomize=True, database=None, max_examples=300)
@given(origin=st.text(max_size=60), host=st.text(max_size=30))
def test_random_origins_never_crash_the_policy(origin: str, host: str) -> None:
    for policy in (OriginPolicy(), OriginPolicy(["https://app.example.com", "*.x.org"])):
        assert isinstance(policy.allows(origin, host), bool)
