"""Interop: the aiortc example peer (examples/aiortc_peer.py) chats with a browser page."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from types import ModuleType
from typing import Any

import pytest

from .conftest import REPO_ROOT, PageFactory, Server, missing
from .pages import expect_cannot_send, expect_message, expect_status, send_with_enter

try:
    import aiortc  # noqa: F401 - only checking that it is installed
except ImportError:
    missing("pip package 'aiortc' is not installed", module_level=True)


def load_example() -> ModuleType:
    path = REPO_ROOT / "examples" / "aiortc_peer.py"
    spec = importlib.util.spec_from_file_location("aiortc_peer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["aiortc_peer"] = module
    spec.loader.exec_module(module)
    return module


aiortc_peer = load_example()


class BotThread:
    """Runs an AiortcPeer (echo bot) on its own asyncio loop in a thread."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.peer: Any = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(url,), daemon=True)

    def _main(self, url: str) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._run(url))
        except BaseException as exc:  # reported to the test thread
            self.error = exc
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _run(self, url: str) -> None:
        self.peer = aiortc_peer.AiortcPeer(url, on_message=aiortc_peer.echo)
        self._ready.set()
        await self.peer.run()

    def start(self) -> BotThread:
        self._thread.start()
        assert self._ready.wait(10), "bot did not start"
        return self

    def call(self, coro: Any, timeout: float = 20.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self.call(self.peer.close(), timeout=10)
            finally:
                self._thread.join(15)
        assert not self._thread.is_alive(), "bot thread did not stop"


@pytest.fixture
def bot_factory() -> Iterator[Any]:
    bots: list[BotThread] = []

    def make(url: str) -> BotThread:
        bot = BotThread(url).start()
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        bot.stop()
        if bot.error is not None:
            raise bot.error


@pytest.mark.parametrize("bot_first", [True, False], ids=["bot-waits", "bot-offers"])
def test_aiortc_peer_chats_with_browser(
    server: Server, new_page: PageFactory, room: str, bot_factory: Any, bot_first: bool
) -> None:
    # bot-waits: the browser joins second, so it offers and trickles candidates.
    # bot-offers: the bot joins second and offers with candidates in its SDP;
    # the browser answers and trickles its candidates, which the bot parses.
    if bot_first:
        bot = bot_factory(server.ws_url(room))
        page = new_page(server.page_url(room))
    else:
        page = new_page(server.page_url(room))
        expect_status(page, "waiting")
        bot = bot_factory(server.ws_url(room))

    expect_status(page, "connected")
    bot.call(bot.peer.wait_connected(20))

    # Browser -> bot (and the echo back: bot -> browser).
    send_with_enter(page, "ping from the browser")
    got = bot.call(asyncio.wait_for(bot.peer.received.get(), 10))
    assert got == "ping from the browser"
    expect_message(page, "peer", "echo: ping from the browser")

    # Bot-initiated message.
    bot.call(bot.peer.send("hello from aiortc"))
    expect_message(page, "peer", "hello from aiortc")

    # The bot leaving is shown in the page at once.
    bot.stop()
    expect_status(page, "peer-left", timeout=10_000)
    expect_cannot_send(page)


def test_parse_browser_candidate_shapes() -> None:
    line = "candidate:842163049 1 udp 1677729535 192.0.2.2 50993 typ srflx raddr 0.0.0.0 rport 0"
    nested = aiortc_peer.parse_candidate(
        {"type": "candidate", "candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}}
    )
    assert nested is not None
    assert (nested.ip, nested.port, nested.type, nested.sdpMid) == (
        "192.0.2.2",
        50993,
        "srflx",
        "0",
    )
    flat = aiortc_peer.parse_candidate({"candidate": line, "sdpMLineIndex": 0})
    assert flat is not None and flat.sdpMLineIndex == 0
    assert aiortc_peer.parse_candidate({"candidate": {"candidate": ""}}) is None
    assert aiortc_peer.parse_candidate({"candidate": None}) is None
    assert aiortc_peer.extract_sdp({"type": "offer", "offer": {"sdp": "v=0"}}, "offer") == "v=0"
    assert aiortc_peer.extract_sdp({"type": "offer", "sdp": "v=0"}, "offer") == "v=0"


def test_aiortc_peer_reports_room_full(server: Server, new_page: PageFactory, room: str) -> None:
    a = new_page(server.page_url(room))
    b = new_page(server.page_url(room))
    expect_status(a, "connected")
    expect_status(b, "connected")

    outcome: list[BaseException | None] = []

    def run_bot() -> None:
        peer = aiortc_peer.AiortcPeer(server.ws_url(room))
        try:
            asyncio.run(asyncio.wait_for(peer.run(), 15))
            outcome.append(None)
        except BaseException as exc:  # examined below
            outcome.append(exc)

    thread = threading.Thread(target=run_bot, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], aiortc_peer.RoomFullError)
    expect_status(a, "connected")
