"""The chat page under its Content-Security-Policy, from both loopback names (issue 12, 5 and 7).

The page is served with a strict CSP (no inline script or style, connections
only to its own origin, never framed); Chromium enforces it here, so a chat
that connects and relays proves the policy lets the client work.  It is loaded
as http://127.0.0.1:PORT/ and http://localhost:PORT/, the two names the
default allowed-host list must accept for a loopback server.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from .conftest import PageFactory, Server
from .pages import expect_message, expect_status, send_with_enter


def watch_csp(page: Page) -> list[str]:
    """Collect the page's CSP violations (console errors and violation events)."""
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return seen


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_chat_works_under_the_csp(
    server: Server, new_page: PageFactory, room: str, name: str
) -> None:
    url = f"http://{name}:{server.port}/?room={room}"
    a, b = new_page(), new_page()
    seen_a, seen_b = watch_csp(a), watch_csp(b)  # before loading: load-time violations too
    response = a.goto(url)
    assert response is not None
    headers: dict[str, Any] = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "server" not in headers
    expect_status(a, "waiting")  # its WebSocket is open: connect-src allows it
    b.goto(url)
    expect_status(b, "connected")
    expect_status(a, "connected")  # a DataChannel between them
    send_with_enter(a, f"hello over {name}")
    expect_message(b, "peer", f"hello over {name}")
    send_with_enter(b, "and back")
    expect_message(a, "peer", "and back")
    assert seen_a == [] and seen_b == []
