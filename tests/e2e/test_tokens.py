"""A server that requires signed room tokens: the page passes the link's token on."""

from __future__ import annotations

import os
import secrets
import subprocess
from urllib.parse import quote

from playwright.sync_api import expect

from .conftest import REPO_ROOT, PageFactory, ServerFactory, server_command
from .pages import expect_message, expect_status, send_with_enter


def test_room_token_from_the_link(
    own_server_factory: ServerFactory, new_page: PageFactory, room: str
) -> None:
    env = {"MCP_TORNADO_TOKEN_SECRET": secrets.token_hex(32)}
    server = own_server_factory(env=env).start()
    token = subprocess.run(
        [*server_command(), "token", room, "--ttl", "600"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    assert token

    # Without the token: refused for good, shown on the join form, no retry loop.
    bare = new_page(server.page_url(room))
    alert = bare.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("new link")
    expect(bare.get_by_role("log")).to_have_count(0)

    # With it: both pages join and chat.
    link = f"{server.page_url(room)}&token={quote(token, safe='')}"
    a = new_page(link)
    expect_status(a, "waiting")
    assert "token=" in a.url  # the shareable link keeps the token
    b = new_page(link)
    expect_status(b, "connected")
    expect_status(a, "connected")
    send_with_enter(a, "with a token")
    expect_message(b, "peer", "with a token")
