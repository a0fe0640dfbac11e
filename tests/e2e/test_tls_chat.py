"""Two Chromium pages chatting through a server that serves ``https://`` and ``wss://`` itself."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from playwright.sync_api import Browser, BrowserContext, Page

from .conftest import ServerFactory
from .pages import connect_pair, expect_message, send_with_enter


class TLSPages:
    """Opens pages in their own contexts that accept the test CA's certificate.

    Chromium cannot be told to trust one CA per context, so certificate errors
    are ignored here; tests/test_tls.py checks the certificate with Python
    clients that trust exactly the test CA.  ``sockets`` lists the URL of every
    WebSocket the pages opened.
    """

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.sockets: list[str] = []

    def __call__(self, url: str | None = None, **_: object) -> Page:
        context = self.browser.new_context(ignore_https_errors=True)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("websocket", lambda ws: self.sockets.append(ws.url))
        if url is not None:
            page.goto(url)
        return page


@pytest.fixture
def tls_pages(browser: Browser) -> Iterator[TLSPages]:
    pages = TLSPages(browser)
    try:
        yield pages
    finally:
        for context in pages.contexts:
            context.close()


def test_two_pages_chat_over_https(
    own_server_factory: ServerFactory, tls_pages: TLSPages, room: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    keyfile.write_bytes(leaf.private_key_pem.bytes())
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    server = own_server_factory(
        extra_args=["--certfile", str(certfile), "--keyfile", str(keyfile)], tls=trusting
    ).start()
    assert server.base_url.startswith("https://")

    a, b = connect_pair(server, tls_pages, room)
    assert a.evaluate("location.protocol") == "https:"
    send_with_enter(a, "hello over TLS")
    expect_message(b, "peer", "hello over TLS")
    send_with_enter(b, "and back")
    expect_message(a, "peer", "and back")
    sockets = tls_pages.sockets
    assert sockets and all(url.startswith("wss://") for url in sockets), sockets
