"""Native TLS (``--certfile``/``--keyfile``): ``wss://`` and ``https://`` on one port, reloads.

Every certificate is made here with ``trustme`` (a throwaway CA per test
module); clients trust exactly that CA, so a passing handshake proves which
certificate the server presented.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import trustme

from tests.rawws import RawWebSocket
from tests.support import FAST, free_port, ready, spawn, stop, wait_until


def write_pair(ca: trustme.CA, folder: Path) -> tuple[Path, Path]:
    """A leaf for 127.0.0.1 signed by ``ca``: its chain and key, as the server reads them."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    keyfile.write_bytes(leaf.private_key_pem.bytes())
    keyfile.chmod(0o600)
    return certfile, keyfile


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class TLSServer:
    """``mcp-tornado serve --workers 2`` with a certificate, on a free loopback port."""

    def __init__(self, tmp: Path, ca: trustme.CA, *args: str) -> None:
        self.tmp = tmp
        self.certfile, self.keyfile = write_pair(ca, tmp)
        self.port = free_port()
        self.log = tmp / "serve.log"
        static = tmp / "static"
        static.mkdir(exist_ok=True)
        (static / "index.html").write_text("<!doctype html><title>tls</title>\n")
        self.process = spawn(
            "serve", "--workers", "2", "--port", str(self.port), "--shutdown-timeout", "3",
            "--certfile", str(self.certfile), "--keyfile", str(self.keyfile),
            "--static-dir", str(static), *FAST, *args, log=self.log,
        )  # fmt: skip
        self.context = client_context(ca)
        try:
            wait_until(lambda: self.status("/healthz") == 200, 20, "serve over https")
            # Every worker ready (serve says so once): SIGHUP reaches ready workers only.
            wait_until(lambda: "open https://" in self.logs(), 20, "every worker ready")
        except BaseException:
            stop(self.process)
            raise

    def status(self, path: str, context: ssl.SSLContext | None = None) -> int:
        url = f"https://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2, context=context or self.context) as r:
                return int(r.status)
        except (OSError, ValueError):
            return 0

    def ws(self, room: str, context: ssl.SSLContext | None = None) -> RawWebSocket:
        """A ``wss://`` client of the signaling endpoint in ``room``."""
        return RawWebSocket.connect(self.port, f"?room={room}", tls=context or self.context)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop(self.process)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[TLSServer]:
    tls = TLSServer(tmp_path_factory.mktemp("tls"), ca, "--handshake-timeout", "2")
    try:
        yield tls
    finally:
        tls.stop()
        assert "Traceback" not in tls.logs()


def relay_offer_answer(a: RawWebSocket, b: RawWebSocket) -> None:
    a.send_json({"type": "offer", "sdp": "v=0 offer"})
    assert b.recv_type("offer", 10)["sdp"] == "v=0 offer"
    b.send_json({"type": "answer", "sdp": "v=0 answer"})
    assert a.recv_type("answer", 10)["sdp"] == "v=0 answer"


def pair(server: TLSServer, room: str) -> tuple[RawWebSocket, RawWebSocket]:
    a = server.ws(room)
    assert a.recv_type("joined", 10)["peers"] == 1
    b = server.ws(room)
    assert b.recv_type("joined", 10)["peers"] == 2
    a.recv_type("peer-joined", 10)
    return a, b


def test_two_peers_relay_offer_and_answer_over_wss(server: TLSServer) -> None:
    # Several pairs: with two workers on one port, both workers' TLS paths are used.
    for _ in range(4):
        a, b = pair(server, f"tls-{uuid.uuid4().hex[:8]}")
        with a, b:
            relay_offer_answer(a, b)


def test_https_serves_the_page_and_healthz(server: TLSServer) -> None:
    for _ in range(4):  # both workers
        assert server.status("/healthz") == 200
        url = f"https://127.0.0.1:{server.port}/"
        with urllib.request.urlopen(url, timeout=5, context=server.context) as r:
            assert r.status == 200
            assert b"<title>tls</title>" in r.read()
    assert server.status("/nope.txt") == 0  # a 404 (urllib raises): logged, with ...
    wait_until(lambda: "404 GET /nope.txt (127.0.0.1)" in server.logs(), 5, "the access log")
    # ... the client's address, not the local pipe's


def test_tls_1_2_or_later_and_http_1_1(server: TLSServer, ca: trustme.CA) -> None:
    modern = client_context(ca)
    modern.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        modern.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.selected_alpn_protocol() == "http/1.1"


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes (a reset ends it too); TimeoutError if it never
    does."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    "sent",
    [
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # plain HTTP to the TLS port
        b"GET /ws/signal/?room=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        bytes(range(256)) * 4,  # garbage
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a ClientHello that stops
        b"",  # a client that never starts its handshake
    ],
    ids=["plain-http", "plain-upgrade", "garbage", "stalled-hello", "silent"],
)
def test_a_bad_tls_client_is_closed_cleanly(server: TLSServer, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        reply = read_until_closed(sock, 10)  # --handshake-timeout 2 bounds the stalled ones
        assert time.monotonic() - started < 8
    assert b"HTTP/1.1" not in reply  # nothing in clear
    assert server.status("/healthz") == 200
    a, b = pair(server, f"tls-{uuid.uuid4().hex[:8]}")
    with a, b:
        relay_offer_answer(a, b)
    assert "Traceback" not in server.logs()


def test_sighup_reloads_the_certificate_and_keeps_open_connections(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    tls = TLSServer(tmp_path, old_ca)
    try:
        a, b = pair(tls, f"tls-{uuid.uuid4().hex[:8]}")
        with a, b:
            relay_offer_answer(a, b)
            # Replace the files the way certbot does (write aside, then rename over).
            folder = tmp_path / "next"
            folder.mkdir()
            certfile, keyfile = write_pair(new_ca, folder)
            os.replace(keyfile, tls.keyfile)
            os.replace(certfile, tls.certfile)
            os.kill(tls.process.pid, signal.SIGHUP)
            wait_until(
                lambda: tls.logs().count("TLS certificate reloaded") == 2, 15, "both reloads"
            )
            relay_offer_answer(a, b)  # the open connections never noticed
            new = client_context(new_ca)
            for _ in range(6):  # new connections, on both workers, show the new certificate
                assert tls.status("/healthz", new) == 200
                assert tls.status("/healthz") == 0  # the old CA no longer verifies
                c = tls.ws(f"tls-{uuid.uuid4().hex[:8]}", new)
                with c:
                    c.recv_type("joined", 10)

            # A reload that fails keeps the certificate in use, with one line saying why.
            tls.certfile.write_text("not a certificate\n")
            os.kill(tls.process.pid, signal.SIGHUP)
            wait_until(lambda: tls.logs().count("TLS reload failed") == 2, 15, "failed reloads")
            failures = [line for line in tls.logs().splitlines() if "TLS reload failed" in line]
            assert all("still serving the previous certificate" in line for line in failures)
            assert tls.status("/healthz", new) == 200
            relay_offer_answer(a, b)
        assert tls.process.poll() is None
    finally:
        tls.stop()
    assert "Traceback" not in tls.logs()


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize(
    "problem", ["missing-cert", "mismatched-key", "not-pem", "key-without-cert"]
)
def test_unusable_certificate_files_stop_the_start_with_one_line(
    tmp_path: Path, ca: trustme.CA, command: str, problem: str
) -> None:
    certfile, keyfile = write_pair(ca, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    other_key = write_pair(trustme.CA(), other)[1]
    args = {
        "missing-cert": ["--certfile", str(tmp_path / "nope.pem"), "--keyfile", str(keyfile)],
        "mismatched-key": ["--certfile", str(certfile), "--keyfile", str(other_key)],
        "not-pem": ["--certfile", str(keyfile), "--keyfile", str(certfile)],
        "key-without-cert": ["--keyfile", str(keyfile)],
    }[problem]
    done = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", command, "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "MCP_TORNADO_SETTINGS"},
    )
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mcp-tornado: --"), done.stderr
    assert done.stdout == ""
    assert "BEGIN" not in done.stderr  # never the key's contents


def test_sighup_to_the_whole_group_of_a_plain_serve_harms_nothing(tmp_path: Path) -> None:
    """Without a certificate SIGHUP changes nothing; the router and workers ignore it."""
    log = tmp_path / "serve.log"
    port = free_port()
    process = spawn("serve", "--workers", "2", "--port", str(port), *FAST, log=log)
    try:
        wait_until(lambda: ready(port) and "open http://" in log.read_text(), 20, "serve")
        children = psutil.Process(process.pid).children()
        os.killpg(process.pid, signal.SIGHUP)  # serve, router and workers alike
        wait_until(lambda: log.read_text().count("no certificate to reload") >= 2, 10, "2 lines")
        time.sleep(0.5)
        assert process.poll() is None and all(child.is_running() for child in children)
        assert psutil.Process(process.pid).children() == children  # nothing restarted
        assert ready(port)
    finally:
        stop(process)
