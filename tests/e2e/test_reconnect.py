"""The page survives a server restart: it shows reconnecting, retries, and chats again."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import PageFactory, ServerProcess
from .pages import connect_pair, expect_message, expect_status, message_input, send_with_enter


def test_server_restart_reconnects(
    own_server: ServerProcess, new_page: PageFactory, room: str
) -> None:
    server = own_server.start()
    a, b = connect_pair(server, new_page, room)

    own_server.stop()
    expect_status(a, "reconnecting", timeout=10_000)
    expect_status(b, "reconnecting", timeout=10_000)
    expect(message_input(a)).to_be_disabled()
    expect(a.get_by_role("status")).to_contain_text("reconnecting")

    # Same port again: both pages rejoin on their own, one of them offers.
    own_server.start()
    expect_status(a, "connected", timeout=30_000)
    expect_status(b, "connected", timeout=30_000)
    send_with_enter(a, "after the restart")
    expect_message(b, "peer", "after the restart")
