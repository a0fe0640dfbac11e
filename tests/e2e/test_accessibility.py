"""Automated accessibility checks (axe-core from frontend/node_modules) and keyboard use."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from .conftest import FRONTEND, PageFactory, Server
from .pages import expect_message, expect_status, message_input, send_with_enter

AXE = FRONTEND / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page: Page) -> list[dict[str, Any]]:
    if not AXE.exists():
        pytest.skip("axe-core not installed (npm ci in frontend/)")
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    violations: list[dict[str, Any]] = result["violations"]
    return [
        {"id": v["id"], "help": v["help"], "nodes": [n["html"] for n in v["nodes"]]}
        for v in violations
    ]


@pytest.mark.parametrize("width", [1000, 375], ids=["desktop", "phone"])
def test_no_axe_violations(server: Server, new_page: PageFactory, room: str, width: int) -> None:
    # axe is injected as an inline script, which the page's CSP (rightly) refuses.
    join = new_page(server.base_url + "/", width=width, bypass_csp=True)
    expect(join.get_by_label("Room name")).to_be_visible()
    assert axe_violations(join) == []

    a = new_page(server.page_url(room), width=width, bypass_csp=True)
    b = new_page(server.page_url(room), width=width, bypass_csp=True)
    expect_status(a, "connected")
    expect_status(b, "connected")
    message_input(a).fill("hello")
    message_input(a).press("Enter")
    expect_message(b, "peer", "hello")
    assert axe_violations(a) == []

    full = new_page(server.page_url(room), width=width, bypass_csp=True)
    expect(full.get_by_role("alert")).to_contain_text("Room is full")
    assert axe_violations(full) == []


def test_keyboard_only(server: Server, new_page: PageFactory, room: str) -> None:
    a = new_page(server.base_url + "/")
    # The room field has focus on load: type, Enter to join.
    expect(a.get_by_label("Room name")).to_be_focused()
    a.keyboard.type(room)
    a.keyboard.press("Enter")
    expect_status(a, "waiting")

    b = new_page(server.page_url(room))
    expect_status(b, "connected")
    expect_status(a, "connected")
    # When the channel opens, focus moves to the message field.
    expect(message_input(a)).to_be_focused()
    a.keyboard.type("typed only")
    a.keyboard.press("Enter")
    expect_message(b, "peer", "typed only")
    # Leave is reachable by keyboard too.
    leave = b.get_by_role("button", name="Leave")
    leave.focus()
    b.keyboard.press("Enter")
    expect(b.get_by_label("Room name")).to_be_focused()
    expect_status(a, "peer-left")


def test_status_is_announced(server: Server, new_page: PageFactory, room: str) -> None:
    a = new_page(server.page_url(room))
    expect_status(a, "waiting")
    status = a.get_by_role("status")
    expect(status).to_have_attribute("aria-live", "polite")
    expect(status).to_have_text("Waiting for a peer")
    b = new_page(server.page_url(room))
    expect(status).to_have_text("Connected")
    log = a.get_by_role("log", name="Chat messages")
    expect(log).to_have_attribute("aria-live", "polite")
    b.close()
    expect(status).to_contain_text("Peer left")


def stalled_page(new_page: PageFactory, url: str, width: int) -> Page:
    """A page whose signaling socket opens but never hears from the server ("Connecting…")."""
    page = new_page(width=width, bypass_csp=True)
    page.route_web_socket("**/ws/signal/**", lambda ws: None)
    page.goto(url)
    return page


def closing_page(new_page: PageFactory, url: str, width: int, frame: str | None, code: int) -> Page:
    """A page whose server sends `frame` (if any), then closes the socket with `code`."""

    def close(ws: Any) -> None:
        if frame is not None:
            ws.send(frame)
        ws.close(code=code, reason="test")

    page = new_page(width=width, bypass_csp=True)
    page.route_web_socket("**/ws/signal/**", close)
    page.goto(url)
    return page


def scripted_page(new_page: PageFactory, url: str, width: int, frames: list[str]) -> Page:
    """A page whose server sends `frames` and then stays silent (the socket stays open)."""

    def script(ws: Any) -> None:
        for frame in frames:
            ws.send(frame)

    page = new_page(width=width, bypass_csp=True)
    page.route_web_socket("**/ws/signal/**", script)
    page.goto(url)
    return page


@pytest.mark.parametrize("width", [1000, 375], ids=["desktop", "phone"])
def test_no_axe_violations_in_any_state(
    server: Server, new_page: PageFactory, room: str, width: int
) -> None:
    """Joining, waiting, connected (with delivered and failed messages), peer typing,
    new-messages button, peer left, disconnected, reconnecting, peer reconnecting,
    room full, refused, rate limited, and a room name that is too long.
    (Reconnecting to peer and server-reconnecting: tests/e2e/test_recovery.py.)"""
    states: dict[str, list[dict[str, Any]]] = {}

    joining = stalled_page(new_page, server.page_url(room + "-stalled"), width)
    expect_status(joining, "connecting")
    states["joining"] = axe_violations(joining)

    a = new_page(server.page_url(room), width=width, bypass_csp=True)
    expect_status(a, "waiting")
    states["waiting"] = axe_violations(a)

    b = new_page(server.page_url(room), width=width, bypass_csp=True)
    expect_status(a, "connected")
    expect_status(b, "connected")
    send_with_enter(a, "see https://example.org/ and ‏שלום")
    expect(a.locator('li[data-delivery="delivered"]')).to_have_count(1)
    message_input(b).press_sequentially("typing")
    expect(a.get_by_test_id("typing")).to_have_text("Peer is typing…")
    states["connected, peer typing"] = axe_violations(a)
    a.emulate_media(color_scheme="dark")
    states["connected, dark"] = axe_violations(a)
    a.emulate_media(color_scheme="light")

    for i in range(15):
        send_with_enter(b, f"filler {i}")
    log = a.get_by_role("log", name="Chat messages")
    log.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
    send_with_enter(b, "unseen")
    expect(a.get_by_role("button", name="1 new message")).to_be_visible()
    a.get_by_role("button", name="Copy invite link").click()
    states["new messages, link copied"] = axe_violations(a)

    b.close()
    expect_status(a, "peer-left", timeout=10_000)
    states["peer left"] = axe_violations(a)

    a.evaluate("window.dispatchEvent(new Event('pagehide'))")
    expect_status(a, "disconnected")
    expect(a.get_by_role("button", name="Rejoin")).to_be_visible()
    states["disconnected"] = axe_violations(a)

    c = new_page(server.page_url(room + "-full"), width=width, bypass_csp=True)
    d = new_page(server.page_url(room + "-full"), width=width, bypass_csp=True)
    expect_status(c, "connected")
    expect_status(d, "connected")
    full = new_page(server.page_url(room + "-full"), width=width, bypass_csp=True)
    expect(full.get_by_role("alert")).to_contain_text("Room is full")
    states["room full"] = axe_violations(full)

    token = '{"type":"error","code":"invalid_token","message":"Invalid room token"}'
    refused = closing_page(new_page, server.page_url(room + "-t"), width, token, 4401)
    expect(refused.get_by_role("alert")).to_contain_text("Invalid room token")
    states["refused"] = axe_violations(refused)

    slow_down = '{"type":"error","code":"rate_limited","message":"Too many messages; slow down"}'
    limited = closing_page(new_page, server.page_url(room + "-r"), width, slow_down, 4429)
    expect(limited.get_by_role("alert")).to_contain_text("rate limit")
    states["rate limited"] = axe_violations(limited)

    retrying = closing_page(new_page, server.page_url(room + "-x"), width, None, 1013)
    expect_status(retrying, "reconnecting")
    expect(retrying.get_by_role("button", name="Retry now")).to_be_visible()
    states["reconnecting"] = axe_violations(retrying)

    away_room = room + "-away"
    away = scripted_page(
        new_page,
        server.page_url(away_room),
        width,
        [
            json.dumps({"type": "joined", "room": away_room, "peers": 2, "initiator": False}),
            json.dumps({"type": "peer-reconnecting", "room": away_room}),
        ],
    )
    expect_status(away, "peer-reconnecting")
    expect(away.get_by_role("status")).to_have_text("Peer reconnecting…")
    states["peer reconnecting"] = axe_violations(away)

    long_name = new_page(server.base_url + "/", width=width, bypass_csp=True)
    long_name.get_by_label("Room name").fill("🎉" * 65)
    expect(long_name.get_by_test_id("room-hint")).to_contain_text("Too long")
    states["room name too long"] = axe_violations(long_name)

    assert states == {name: [] for name in states}
