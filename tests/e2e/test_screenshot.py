"""The README's screenshot (docs/screenshot.png): two peers chatting in the finished client,
with delivery marks, a link, right-to-left text, the typing line and the route badge.

Always saved as test-artifacts/screenshot.png; ``MCP_E2E_UPDATE_SCREENSHOT=1``
also copies it to docs/screenshot.png:

    MCP_E2E_UPDATE_SCREENSHOT=1 .venv/bin/pytest -q tests/e2e/test_screenshot.py
"""

from __future__ import annotations

import os
import shutil

from playwright.sync_api import expect

from .conftest import ARTIFACTS, REPO_ROOT, PageFactory, Server
from .pages import expect_message, expect_status, message_input, send_with_enter


def test_readme_screenshot(server: Server, new_page: PageFactory) -> None:
    room = "design review"
    a = new_page(server.page_url(room), width=900, height=640)
    expect_status(a, "waiting")
    b = new_page(server.page_url(room), width=900, height=640)
    expect_status(a, "connected")
    expect_status(b, "connected")

    send_with_enter(b, "Hi! Did you get the new mock-ups?")
    expect_message(a, "peer", "mock-ups")
    box = message_input(a)
    box.press_sequentially("Yes, they look great.")
    box.press("Shift+Enter")
    box.press_sequentially("The spec is at https://example.org/spec (section 3).")
    box.press("Enter")
    expect_message(b, "peer", "section 3")
    send_with_enter(b, "Perfect, let's ship it on Friday.")
    expect_message(a, "peer", "Friday")
    send_with_enter(a, "שבת שלום!")
    expect(a.locator('li[data-from="me"][data-delivery="delivered"]')).to_have_count(2)
    message_input(b).press_sequentially("See you")
    expect(a.get_by_test_id("typing")).to_have_text("Peer is typing…")
    # The route badge (from getStats()) is part of the picture: loopback is direct.
    expect(a.locator("[data-route]")).to_have_text("Direct connection")
    a.locator(":focus").blur()

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "screenshot.png"
    a.screenshot(path=str(shot))
    if os.environ.get("MCP_E2E_UPDATE_SCREENSHOT") == "1":
        (REPO_ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO_ROOT / "docs" / "screenshot.png")
