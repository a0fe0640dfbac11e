"""The page survives a server restart: it shows reconnecting, retries, and chats again."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from .conftest import ARTIFACTS, PageFactory, ServerProcess
from .pages import connect_pair, expect_cannot_send, expect_message, expect_status, send_with_enter


def retry_now(page: Page) -> None:
    """Skip the rest of the backoff delay (if the timer has not fired yet)."""
    page.evaluate(
        """() => [...document.querySelectorAll("button")]
            .find((b) => b.textContent === "Retry now")?.click()"""
    )


def test_server_restart_reconnects(
    own_server: ServerProcess, new_page: PageFactory, room: str
) -> None:
    server = own_server.start()
    a = new_page(server.page_url(room))
    expect_status(a, "waiting")

    own_server.stop()
    expect_status(a, "reconnecting", timeout=10_000)
    expect_cannot_send(a)
    expect(a.get_by_role("status")).to_contain_text("reconnecting")
    expect(a.get_by_role("button", name="Retry now")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    a.screenshot(path=str(ARTIFACTS / "reconnecting.png"))

    # Same port again: the page rejoins on its own.
    own_server.start()
    retry_now(a)
    expect_status(a, "waiting", timeout=30_000)
    b = new_page(server.page_url(room))
    expect_status(a, "connected")
    expect_status(b, "connected")
    send_with_enter(a, "after the restart")
    expect_message(b, "peer", "after the restart")


def test_graceful_server_restart_keeps_the_chat(
    own_server: ServerProcess, new_page: PageFactory, room: str
) -> None:
    server = own_server.start()
    a, b = connect_pair(server, new_page, room)

    # An operator's restart (SIGTERM): the signaling sockets close, the chat does not.
    own_server.stop()
    expect_status(a, "server-reconnecting", timeout=10_000)
    expect_status(b, "server-reconnecting", timeout=10_000)
    expect(a.get_by_role("status")).to_contain_text("reconnecting")
    send_with_enter(a, "while the server restarts")
    expect_message(b, "peer", "while the server restarts")

    own_server.start()
    retry_now(a)
    retry_now(b)
    expect_status(a, "connected", timeout=30_000)
    expect_status(b, "connected", timeout=30_000)
    send_with_enter(b, "after the restart")
    expect_message(a, "peer", "after the restart")
