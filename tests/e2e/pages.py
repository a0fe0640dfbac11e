"""Page helpers shared by the browser end-to-end tests."""

from __future__ import annotations

from playwright.sync_api import Locator, Page, expect

from .conftest import PageFactory, Server

CONNECT_TIMEOUT = 20_000


def status(page: Page) -> str | None:
    return page.locator("[data-status]").get_attribute("data-status")


def expect_status(page: Page, value: str, timeout: int = CONNECT_TIMEOUT) -> None:
    expect(page.locator("[data-status]")).to_have_attribute("data-status", value, timeout=timeout)


def message_input(page: Page) -> Locator:
    return page.get_by_label("Message", exact=True)


def send_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Send", exact=True)


def expect_cannot_send(page: Page) -> None:
    """No chat: Send is disabled (the message box stays usable, so focus and the draft survive)."""
    message_input(page).fill("draft")
    expect(send_button(page)).to_be_disabled()
    message_input(page).fill("")


def send_with_enter(page: Page, text: str) -> None:
    box = message_input(page)
    expect(box).to_be_enabled()
    box.fill(text)
    expect(send_button(page)).to_be_enabled()
    box.press("Enter")
    expect(box).to_have_value("")


def send_with_button(page: Page, text: str) -> None:
    box = message_input(page)
    expect(box).to_be_enabled()
    box.fill(text)
    send_button(page).click()
    expect(box).to_have_value("")


def expect_message(page: Page, sender: str, text: str) -> None:
    log = page.get_by_role("log", name="Chat messages")
    expect(log.locator(f'li[data-from="{sender}"]', has_text=text)).to_have_count(1)


def connect_pair(server: Server, new_page: PageFactory, room: str) -> tuple[Page, Page]:
    a = new_page(server.page_url(room))
    expect(page_room_name(a)).to_have_text(room)
    expect_status(a, "waiting")
    expect_cannot_send(a)
    b = new_page(server.page_url(room))
    expect_status(b, "connected")
    expect_status(a, "connected")
    return a, b


def page_room_name(page: Page) -> Locator:
    return page.get_by_test_id("room-name")
