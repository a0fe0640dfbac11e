"""The HTTP side of a real worker: static files and their headers (issue 12, item 7), probes."""

from __future__ import annotations

import http.client
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_tornado import web
from tests.support import Cluster, running_cluster, stop, wait_until

INDEX = '<!doctype html><html><head><meta charset="UTF-8"><title>t</title></head></html>\n'
ASSET = "assets/index-HEhh6ZS-.js"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("web")
    static = tmp / "dist"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text(INDEX)
    (static / ASSET).write_text("console.log(1)\n")
    (static / "robots.txt").write_text("User-agent: *\n")
    with running_cluster(tmp, 1, "--static-dir", str(static)) as cluster:
        yield cluster


def get(cluster: Cluster, path: str) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", cluster.ports[0], timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.msg, response.read()
    finally:
        conn.close()


def test_a_nul_byte_in_the_path_is_a_bad_request_without_a_traceback(site: Cluster) -> None:
    for path in ["/index.html%00.js", "/%00", "/assets/%00/x", "/index.html%00"]:
        status, _, _ = get(site, path)
        assert status == 400, path
    assert get(site, "/")[0] == 200  # and the worker still serves
    logs = site.logs()
    assert "Traceback" not in logs
    assert "embedded null byte" not in logs


@pytest.mark.parametrize("path", ["/", "/index.html", "/?room=lobby", "/robots.txt", "/" + ASSET])
def test_every_file_has_the_security_headers(site: Cluster, path: str) -> None:
    status, headers, _ = get(site, path)
    assert status == 200
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "Server" not in headers


@pytest.mark.parametrize("path", ["/healthz", "/no-such-file", "/ws/signal/", "/index.html%00"])
def test_other_answers_hide_the_server_too(site: Cluster, path: str) -> None:
    _, headers, _ = get(site, path)
    assert "Server" not in headers
    if path != "/ws/signal/":  # answered by the handshake (plain text), not by Tornado
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_chat_page_is_utf8_and_revalidated(site: Cluster) -> None:
    for path in ["/", "/index.html"]:
        status, headers, body = get(site, path)
        assert status == 200 and body.decode() == INDEX
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Cache-Control"] == "no-cache"


def test_hashed_assets_are_immutable(site: Cluster) -> None:
    _, headers, _ = get(site, "/" + ASSET)
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Content-Type"].endswith("; charset=utf-8")
    _, headers, _ = get(site, "/robots.txt")  # not hashed: revalidated
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_traversal_still_refused(site: Cluster) -> None:
    for path in ["/../pyproject.toml", "/assets/../../x", "/%2e%2e/%2e%2e/etc/passwd"]:
        assert get(site, path)[0] in (400, 403, 404), path


BUILT = Path(__file__).resolve().parents[1] / "frontend" / "dist" / "index.html"


@pytest.mark.skipif(not BUILT.is_file(), reason="frontend not built (cd frontend && npm run build)")
def test_the_built_client_needs_no_inline_script_or_style() -> None:
    """The CSP has no 'unsafe-inline': the built page must not need it."""
    html = BUILT.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html and " style=" not in html
    assert " on" not in re.sub(r"<script[^>]*src=[^>]*>", "", html).lower().split("<body")[-1]
    for asset in re.findall(r'(?:src|href)="\./(assets/[^"]+)"', html):
        assert web._HASHED_ASSET.fullmatch(asset), asset


# --- health probes ------------------------------------------------------------------------


def probe(port: int, path: str) -> tuple[int, dict[str, object], http.client.HTTPMessage]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = json.loads(response.read())
        assert isinstance(body, dict)
        return response.status, body, response.msg
    finally:
        conn.close()


def test_the_probes_answer_json(site: Cluster) -> None:
    port = site.ports[0]
    for path, status, state in [("/healthz", 200, "ok"), ("/readyz", 200, "ready")]:
        code, body, headers = probe(port, path)
        assert (code, body["status"]) == (status, state), path
        assert headers["Content-Type"] == "application/json"
        assert headers["Cache-Control"] == "no-store"
        assert isinstance(body["pid"], int) and isinstance(body["worker"], str)
    assert probe(port, "/readyz")[1]["router"]  # the epoch of the router it is registered with


def test_readiness_follows_the_router_and_liveness_does_not(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1) as cluster:
        port = cluster.ports[0]
        assert cluster.router is not None
        epoch = probe(port, "/readyz")[1]["router"]
        stop(cluster.router, signal.SIGKILL)

        wait_until(lambda: probe(port, "/readyz")[0] == 503, 15, "/readyz to say 503")
        status, body, _ = probe(port, "/readyz")
        assert body["status"] == "unavailable" and body["reason"] == "router unavailable"
        status, body, _ = probe(port, "/healthz")  # the worker is alive: never restart it for this
        assert status == 200 and body["status"] == "ok"

        cluster.start_router()
        wait_until(lambda: probe(port, "/readyz")[0] == 200, 15, "/readyz to say 200 again")
        assert probe(port, "/readyz")[1]["router"] != epoch  # a new router
        assert probe(port, "/healthz")[0] == 200
