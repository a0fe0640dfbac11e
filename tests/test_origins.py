"""The Origin allow-list: unit rules, and refusals at the handshake of a real worker."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_tornado.cli import parse_settings
from mcp_tornado.origins import HostPolicy, OriginPolicy, split_origins
from mcp_tornado.settings import ServeSettings
from tests.rawws import RawWebSocket, upgrade_request
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


# --- the Host header (DNS rebinding, issue 12 item 5) ---------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8000", True),  # IP addresses: no DNS to rebind
        ("10.1.2.3", True),
        ("[::1]:8000", True),
        ("[::ffff:127.0.0.1]:8000", True),
        ("localhost:8000", True),
        ("LocalHost", True),
        ("evil.com", False),  # a rebinding domain resolving to us
        ("evil.com:8000", False),
        ("localhost.evil.com:8000", False),
        ("127.0.0.1.evil.com", False),
        ("localhost.", False),
        ("x.localhost", False),
        ("", False),
        ("[::1", False),
        ("localhost:99999", False),
        ("localhost:80:80", False),
        ("1.2.3.4.5", False),
        ("local host", False),
        ("localhost@evil.com", False),
    ],
)
def test_default_hosts(host: str, allowed: bool) -> None:
    assert HostPolicy().allows(host) is allowed
    assert HostPolicy((), "127.0.0.1").allows(host) is allowed
    assert HostPolicy((), "0.0.0.0").allows(host) is allowed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("signal.example.com:8443", True),
        ("signal.example.com", False),  # the entry names a port
        ("SIGNAL.example.com:8443", True),
        ("x.corp.org", True),  # *.corp.org
        ("a.b.corp.org:1", True),
        ("corp.org", False),  # not the apex
        ("evilcorp.org", False),
        ("myhost:8000", True),  # the --host name
        ("app.example.com", True),  # an --allowed-origin host
        ("app.example.com:9", True),
        ("a.partner.org", True),  # an --allowed-origin wildcard
        ("partner.org", False),
        ("evil.com", False),
        ("127.0.0.1", True),  # IPs and localhost stay allowed
        ("localhost", True),
    ],
)
def test_configured_hosts(host: str, allowed: bool) -> None:
    policy = HostPolicy(
        ["signal.example.com:8443", "*.corp.org"],
        "myhost",
        ["https://app.example.com", "https://*.partner.org", "*", "null"],
    )
    assert policy.allows(host) is allowed


def test_star_host_turns_the_check_off() -> None:
    assert HostPolicy(["*"]).allows("evil.com")


def test_bad_host_entries_are_refused_at_startup() -> None:
    for entry in ["http://a.com", "a.com/x", "a.com:x", "a b", "*.", "a.com:70000"]:
        with pytest.raises(ValueError):
            HostPolicy([entry])
    with pytest.raises(SystemExit):
        parse_settings(["worker", "--allowed-host", "http://x"])


def test_allowed_host_flag_reaches_the_workers() -> None:
    serve = parse_settings(["serve", "--allowed-host", "a.example,b.example:8443"])
    assert isinstance(serve, ServeSettings)
    assert serve.worker.limits.allowed_hosts == ("a.example,b.example:8443",)


@settings(deadline=None, derandomize=True, database=None, max_examples=300)
@given(host=st.text(max_size=40))
def test_random_hosts_never_crash_the_policy(host: str) -> None:
    assert isinstance(HostPolicy(["*.x.org", "a.com:1"], "h").allows(host), bool)


def upgrade(port: int, host: str, origin: str | None) -> tuple[int, bytes]:
    """Status and body of an upgrade that says ``Host: host``."""
    request = upgrade_request(port, f"/ws/signal/?room=h-{uuid.uuid4().hex[:8]}")
    request = request.replace(f"Host: 127.0.0.1:{port}".encode(), f"Host: {host}".encode())
    if origin is not None:
        request = request[:-2] + f"Origin: {origin}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            with contextlib.suppress(OSError):
                while chunk := sock.recv(4096):
                    body += chunk
    return status, body


def test_dns_rebinding_is_refused_with_an_allow_list(guarded: Cluster) -> None:
    """The issue's reproduction: Origin and Host both evil.com, --allowed-origin set."""
    port = guarded.ports[0]
    status, body = upgrade(port, "evil.com", "http://evil.com")
    assert status == 421
    assert body.decode().count("\n") == 1 and "Host not allowed" in body.decode()
    assert upgrade(port, f"evil.com:{port}", f"http://evil.com:{port}")[0] == 421
    assert upgrade(port, "app.example.com", "https://app.example.com")[0] == 101
    assert upgrade(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")[0] == 101
    assert "Traceback" not in guarded.logs()


def test_dns_rebinding_is_refused_by_default(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1) as cluster:
        port = cluster.ports[0]
        assert upgrade(port, f"evil.com:{port}", f"http://evil.com:{port}")[0] == 421
        assert upgrade(port, f"evil.com:{port}", None)[0] == 421  # no Origin: same answer
        # the browser client's own addresses, with the Origin they send
        assert upgrade(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")[0] == 101
        assert upgrade(port, f"localhost:{port}", f"http://localhost:{port}")[0] == 101
        assert upgrade(port, f"[::1]:{port}", None)[0] == 101


def test_allowed_host_at_a_real_worker(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1, "--allowed-host", "signal.example.com:443") as cluster:
        port = cluster.ports[0]
        assert upgrade(port, "signal.example.com:443", None)[0] == 101
        assert upgrade(port, "signal.example.com", None)[0] == 421
        assert upgrade(port, "other.example.com:443", None)[0] == 421
