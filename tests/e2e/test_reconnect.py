"""The page survives a server restart: it shows reconnecting, retries, and chats again."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import ARTIFACTS, PageFactory, ServerProcess
from .pages import connect_pair, expect_cannot_send, expect_message, expect_status, send_with_enter


def test_server_restart_reconnects(
    own_server: ServerProcess, new_page: PageFactory, room: str
) -> None:
    server = own_server.start()
    a, b = connect_pair(server, new_page, room)

    own_server.stop()
    expect_status(a, "reconnecting", timeout=10_000)
    expect_status(b, "reconnecting", timeout=10_000)
    expect_cannot_send(a)
    expect(a.get_by_role("status")).to_contain_text("reconnecting")
    expect(a.get_by_role("button", name="Retry now")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    a.screenshot(path=str(ARTIFACTS / "reconnecting.png"))

    # Same port again: both pages rejoin on their own, one of them offers.
    own_server.start()
    # A skips the rest of its backoff delay (if its timer has not fired yet);
    # B waits for its timer.
    a.evaluate(
        """() => [...document.querySelectorAll("button")]
            .find((b) => b.textContent === "Retry now")?.click()"""
    )
    expect_status(a, "connected", timeout=30_000)
    expect_status(b, "connected", timeout=30_000)
    send_with_enter(a, "after the restart")
    expect_message(b, "peer", "after the restart")
