"""Browser end-to-end tests: real server, real Chromium, real DataChannels."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import ARTIFACTS, PageFactory, Server
from .pages import (
    connect_pair,
    expect_cannot_send,
    expect_message,
    expect_status,
    message_input,
    page_room_name,
    send_with_button,
    send_with_enter,
)


def test_two_pages_chat_and_third_sees_room_full(
    server: Server, new_page: PageFactory, room: str
) -> None:
    a, b = connect_pair(server, new_page, room)

    send_with_enter(a, "hello from A")
    expect_message(b, "peer", "hello from A")
    expect_message(a, "me", "hello from A")
    send_with_button(b, "hi from B")
    expect_message(a, "peer", "hi from B")
    expect_message(b, "me", "hi from B")
    # Order on each side: A's message before B's.
    texts = a.locator('li[data-from="me"], li[data-from="peer"]').all_inner_texts()
    assert [t.split("\n")[-1] for t in texts] == ["hello from A", "hi from B"]

    ARTIFACTS.mkdir(exist_ok=True)
    a.screenshot(path=str(ARTIFACTS / "chat-connected.png"))

    # A third page is refused: error shown, no chat UI, can pick another room.
    c = new_page(server.page_url(room))
    alert = c.get_by_role("alert")
    expect(alert).to_contain_text("Room is full")
    expect(c.get_by_role("log")).to_have_count(0)
    expect(message_input(c)).to_have_count(0)
    c.screenshot(path=str(ARTIFACTS / "room-full.png"))
    room_box = c.get_by_label("Room name")
    expect(room_box).to_be_focused()
    room_box.fill(f"{room}-other")
    room_box.press("Enter")
    expect(page_room_name(c)).to_have_text(f"{room}-other")
    expect_status(c, "waiting")
    assert "room=" in c.url and f"{room}-other" in c.url

    # The two original peers are unaffected.
    send_with_enter(b, "still here")
    expect_message(a, "peer", "still here")


def test_peer_closes_tab_then_new_peer_joins(
    server: Server, new_page: PageFactory, room: str
) -> None:
    a, b = connect_pair(server, new_page, room)
    send_with_enter(b, "bye")
    expect_message(a, "peer", "bye")

    b.context.close()
    expect_status(a, "peer-left", timeout=10_000)
    expect_cannot_send(a)

    d = new_page(server.page_url(room))
    expect_status(d, "connected")
    expect_status(a, "connected")
    send_with_enter(d, "new peer here")
    expect_message(a, "peer", "new peer here")
    send_with_button(a, "welcome")
    expect_message(d, "peer", "welcome")
    # The page of A was never reloaded: its earlier messages are still there.
    expect_message(a, "peer", "bye")


def test_leave_button(server: Server, new_page: PageFactory, room: str) -> None:
    a, b = connect_pair(server, new_page, room)
    a.get_by_role("button", name="Leave").click()
    expect(a.get_by_label("Room name")).to_be_visible()
    assert "room=" not in a.url
    expect_status(b, "peer-left", timeout=5_000)

    # Rejoin from the form: B is waiting, so A becomes the initiator again.
    a.get_by_label("Room name").fill(room)
    a.get_by_role("button", name="Join").click()
    expect_status(a, "connected")
    expect_status(b, "connected")


def test_phone_width_layout(server: Server, new_page: PageFactory, room: str) -> None:
    a = new_page(server.page_url(room), width=375, height=700)
    b = new_page(server.page_url(room), width=375, height=700)
    expect_status(a, "connected")
    expect_status(b, "connected")
    send_with_enter(
        a, "a fairly long message that has to wrap nicely on a narrow phone screen " * 2
    )
    expect_message(b, "peer", "narrow phone")
    # Nothing overflows horizontally.
    overflow = b.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    assert overflow is False
    ARTIFACTS.mkdir(exist_ok=True)
    b.screenshot(path=str(ARTIFACTS / "chat-phone.png"))


def test_page_has_no_hardcoded_socket_url(server: Server, new_page: PageFactory, room: str) -> None:
    page = new_page()
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    page.goto(server.page_url(room))
    expect_status(page, "waiting")
    # The client opts in to resume (see the README's "Protocol").
    assert urls == [server.ws_url(room) + "&resumable=1"]
