"""The HTTP side of a real worker: static files and their headers (issue 12, item 7)."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_tornado import web
from tests.support import Cluster, running_cluster

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
