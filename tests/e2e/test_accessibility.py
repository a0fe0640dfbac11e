"""Automated accessibility checks (axe-core from frontend/node_modules) and keyboard use."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from .conftest import FRONTEND, PageFactory, Server
from .pages import expect_message, expect_status, message_input

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
