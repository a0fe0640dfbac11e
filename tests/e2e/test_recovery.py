"""Recovery in Chromium: failures are forced by wrapping RTCPeerConnection in the page.

- a forced ICE failure is repaired by an ICE restart, never shown as "Peer left";
- a connection whose candidates never arrive times out with a message that says what to do;
- the whole server killed and restarted: the DataChannel carries the chat meanwhile, and
  signaling (proven by an ICE restart) works again afterwards;
- one page's worker killed -9: the page resumes on a worker, the chat never stops
  (needs the server's resume support; skipped when ``joined`` has no ``resume`` field).
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import psutil
import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from .conftest import ARTIFACTS, PageFactory, Server, ServerFactory, ServerProcess
from .pages import expect_cannot_send, expect_message, expect_status, send_with_enter
from .test_accessibility import axe_violations

# Runs before the app: wraps RTCPeerConnection so a test can force failures, and
# records every status the page shows (some last only a moment).
WRAP_PEER_CONNECTION = """
(() => {
  const Native = window.RTCPeerConnection;
  const nativeState = Object.getOwnPropertyDescriptor(Native.prototype, "connectionState").get;
  const dropCandidates = () => window.__dropCandidates === true;
  const pcs = [];
  window.__pcs = pcs;
  class Wrapped extends Native {
    constructor(config) {
      super(config);
      this.__forced = null;
      this.__restarts = 0;
      pcs.push(this);
    }
    get connectionState() {
      return this.__forced ?? nativeState.call(this);
    }
    restartIce() {
      if (!window.__stickyFailure) this.__forced = null;
      this.__restarts += 1;
      return super.restartIce();
    }
    addIceCandidate(candidate) {
      return dropCandidates() ? Promise.resolve() : super.addIceCandidate(candidate);
    }
    setRemoteDescription(desc) {
      if (dropCandidates() && desc && desc.sdp) {
        const lines = desc.sdp.split("\\r\\n");
        const sdp = lines.filter((l) => !l.startsWith("a=candidate")).join("\\r\\n");
        desc = { type: desc.type, sdp };
      }
      return super.setRemoteDescription(desc);
    }
  }
  window.RTCPeerConnection = Wrapped;
  // ICE reports "failed" on the newest connection (the real one is fine: only a restart helps).
  window.__forceFailed = () => {
    const pc = pcs[pcs.length - 1];
    pc.__forced = "failed";
    pc.dispatchEvent(new Event("connectionstatechange"));
  };
  // Ends a sticky failure: ICE reports "connected" again.
  window.__heal = () => {
    window.__stickyFailure = false;
    const pc = pcs[pcs.length - 1];
    pc.__forced = null;
    pc.dispatchEvent(new Event("connectionstatechange"));
  };
  // Signaling sockets that closed under the page (not by the page itself).
  window.__socketDrops = 0;
  const NativeSocket = window.WebSocket;
  window.WebSocket = class extends NativeSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("close", (ev) => {
        if (ev.code !== 1000) window.__socketDrops += 1;
      });
    }
  };
  window.__statuses = [];
  new MutationObserver(() => {
    const el = document.querySelector("[data-status]");
    const s = el && el.getAttribute("data-status");
    if (s && window.__statuses[window.__statuses.length - 1] !== s) window.__statuses.push(s);
  }).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"],
  });
})();
"""


def recovery_page(
    new_page: PageFactory,
    url: str,
    *,
    drop_candidates: bool = False,
    connect_timeout_ms: int | None = None,
) -> Page:
    page = new_page(bypass_csp=True)  # bypass_csp: axe is injected inline
    setup: list[str] = []
    if drop_candidates:
        setup.append("window.__dropCandidates = true;")
    if connect_timeout_ms is not None:
        setup.append(f"window.MCP_TORNADO_CONFIG = {{connectTimeoutMs: {connect_timeout_ms}}};")
    page.add_init_script("\n".join(setup) + WRAP_PEER_CONNECTION)
    page.goto(url)
    return page


def recovery_pair(server: Server, new_page: PageFactory, room: str) -> tuple[Page, Page]:
    a = recovery_page(new_page, server.page_url(room))
    expect_status(a, "waiting")
    b = recovery_page(new_page, server.page_url(room))
    expect_status(a, "connected")
    expect_status(b, "connected")
    return a, b


def statuses(page: Page) -> list[str]:
    seen: list[str] = page.evaluate("window.__statuses")
    return seen


def ice_ufrag(page: Page) -> str:
    ufrag: str = page.evaluate(
        """() => {
            const pc = window.__pcs[window.__pcs.length - 1];
            return (pc.localDescription.sdp.match(/a=ice-ufrag:(\\S+)/) || [])[1] || "";
        }"""
    )
    return ufrag


def force_ice_failure_and_recover(a: Page, b: Page) -> None:
    """A's link reports "failed": A restarts ICE through signaling; both end connected."""
    before = ice_ufrag(a), ice_ufrag(b)
    a.evaluate("window.__forceFailed()")
    expect_status(a, "connected", timeout=30_000)
    expect_status(b, "connected", timeout=30_000)
    # A real ICE restart went through signaling: both sides have new ICE credentials.
    for _ in range(200):
        if ice_ufrag(a) != before[0] and ice_ufrag(b) != before[1]:
            break
        a.wait_for_timeout(100)
    assert ice_ufrag(a) != before[0] and ice_ufrag(b) != before[1]
    assert a.evaluate("window.__pcs[window.__pcs.length - 1].__restarts") >= 1


def never_left(*pages: Page) -> None:
    for page in pages:
        assert "peer-left" not in statuses(page), statuses(page)
        log = page.get_by_role("log", name="Chat messages")
        expect(log).not_to_contain_text("Peer left")


def test_forced_ice_failure_recovers_without_peer_left(
    server: Server, new_page: PageFactory, room: str
) -> None:
    a, b = recovery_pair(server, new_page, room)
    force_ice_failure_and_recover(a, b)
    assert "ice-restarting" in statuses(a), statuses(a)
    # The other side forces one too (a restart from the polite side works the same way).
    force_ice_failure_and_recover(b, a)
    never_left(a, b)
    # Same peer connection all along, and the chat still works.
    assert a.evaluate("window.__pcs.length") == 1
    send_with_enter(a, "after the ICE restart")
    expect_message(b, "peer", "after the ICE restart")
    expect(a.locator("[data-route]")).to_have_attribute("data-route", "direct")
    expect(a.locator("[data-route]")).to_have_text("Direct connection")


def test_reconnecting_to_peer_state_is_shown_and_accessible(
    server: Server, new_page: PageFactory, room: str
) -> None:
    a, b = recovery_pair(server, new_page, room)
    # ICE stays "failed" through the restart: the page keeps showing the repair.
    a.evaluate("window.__stickyFailure = true; window.__forceFailed()")
    expect_status(a, "ice-restarting")
    expect(a.get_by_role("status")).to_have_text("Reconnecting to peer…")
    expect_status(b, "connected")
    ARTIFACTS.mkdir(exist_ok=True)
    a.screenshot(path=str(ARTIFACTS / "reconnecting-to-peer.png"))
    assert axe_violations(a) == []
    a.evaluate("window.__heal()")
    expect_status(a, "connected")
    never_left(a, b)


@pytest.mark.parametrize("closing", ["offerer", "answerer"])
def test_closed_peer_connection_is_replaced_without_peer_left(
    server: Server, new_page: PageFactory, room: str, closing: str
) -> None:
    a, b = recovery_pair(server, new_page, room)
    # One tab's connection is closed under it (as if its network stack gave up).
    # B joined second: it made the offer.
    (b if closing == "offerer" else a).evaluate("window.__pcs[window.__pcs.length - 1].close()")
    expect_status(a, "connected", timeout=30_000)
    expect_status(b, "connected", timeout=30_000)
    send_with_enter(b, "on a new connection")  # waits for Send to be usable
    expect_message(a, "peer", "on a new connection")
    never_left(a, b)


def test_never_connecting_pair_shows_the_timeout_advice(
    server: Server, new_page: PageFactory, room: str
) -> None:
    a = recovery_page(
        new_page, server.page_url(room), drop_candidates=True, connect_timeout_ms=3_000
    )
    expect_status(a, "waiting")
    b = recovery_page(
        new_page, server.page_url(room), drop_candidates=True, connect_timeout_ms=3_000
    )
    for page in (a, b):
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("TURN relay server is needed", timeout=20_000)
        expect(alert).to_contain_text("none is configured")
        expect_status(page, "peer-connecting")
        expect_cannot_send(page)
    ARTIFACTS.mkdir(exist_ok=True)
    b.screenshot(path=str(ARTIFACTS / "connect-timeout.png"))
    assert axe_violations(b) == []
    # The offering side keeps trying with backoff: an ICE restart, then fresh connections.
    b.wait_for_function("window.__pcs.some((pc) => pc.__restarts > 0)", timeout=20_000)
    assert "connected" not in statuses(a)


def kill_group(own: ServerProcess) -> None:
    """The whole server (supervisor, router, workers) dies at once: no leave, no close frames."""
    proc = own.proc
    assert proc is not None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    own.stop()  # closes its log; the process is gone already


def test_server_killed_and_restarted_chat_goes_on(
    own_server_factory: ServerFactory, new_page: PageFactory, room: str
) -> None:
    own = own_server_factory()
    server = own.start()
    a, b = recovery_pair(server, new_page, room)
    send_with_enter(a, "before the outage")
    expect_message(b, "peer", "before the outage")

    kill_group(own)
    expect_status(a, "server-reconnecting", timeout=15_000)
    expect_status(b, "server-reconnecting", timeout=15_000)
    # No signaling server: the DataChannel does not need one.
    send_with_enter(a, "during the outage, from A")
    expect_message(b, "peer", "during the outage, from A")
    send_with_enter(b, "during the outage, from B")
    expect_message(a, "peer", "during the outage, from B")
    expect(a.get_by_role("button", name="Retry now")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    a.screenshot(path=str(ARTIFACTS / "server-reconnecting.png"))
    assert axe_violations(a) == []

    own.start()
    for page in (a, b):
        page.evaluate(
            """() => [...document.querySelectorAll("button")]
                .find((b) => b.textContent === "Retry now")?.click()"""
        )
    expect_status(a, "connected", timeout=30_000)
    expect_status(b, "connected", timeout=30_000)
    # Signaling works again: the fresh join negotiated a new connection (make before
    # break), and an ICE restart goes through.
    for page in (a, b):
        page.wait_for_function("window.__pcs.length >= 2", timeout=30_000)
    force_ice_failure_and_recover(a, b)
    send_with_enter(b, "after the restart")
    expect_message(a, "peer", "after the restart")
    never_left(a, b)


def joined_frame(server: Server) -> dict[str, Any]:
    """What the server says to a client that asks for resume (sync: Playwright owns the loop)."""
    with connect(server.ws_url("e2e-resume-probe") + "&resumable=1", open_timeout=10) as ws:
        frame: dict[str, Any] = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "leave"}))
        return frame


def workers_with_clients(port: int) -> list[int]:
    """Pids of the processes holding established connections on the server's port."""
    return sorted(
        {
            int(conn.pid)
            for conn in psutil.net_connections("tcp")
            if conn.pid
            and conn.laddr
            and conn.laddr.port == port
            and conn.status == psutil.CONN_ESTABLISHED
        }
    )


def socket_drops(*pages: Page) -> int:
    return sum(int(page.evaluate("window.__socketDrops")) for page in pages)


def kill_a_page_worker(port: int, a: Page, b: Page) -> None:
    """kill -9 a worker that holds a page's signaling socket (not just an idle HTTP one)."""
    for pid in workers_with_clients(port):
        os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            if socket_drops(a, b):
                return
            a.wait_for_timeout(100)
    raise AssertionError("no page lost its signaling socket")


def test_chat_survives_kill_9_of_a_worker(
    own_server_factory: ServerFactory, new_page: PageFactory, room: str
) -> None:
    own = own_server_factory()
    server = own.start()
    joined = joined_frame(server)
    if "resume" not in joined:
        pytest.skip("the server's joined frame has no resume field")
    a, b = recovery_pair(server, new_page, room)
    send_with_enter(a, "before the kill")
    expect_message(b, "peer", "before the kill")

    kill_a_page_worker(server.port, a, b)
    # Whichever page was on that worker resumes; both chat on meanwhile.
    send_with_enter(a, "while a worker died, from A")
    expect_message(b, "peer", "while a worker died, from A")
    send_with_enter(b, "while a worker died, from B")
    expect_message(a, "peer", "while a worker died, from B")
    expect_status(a, "connected", timeout=30_000)
    expect_status(b, "connected", timeout=30_000)
    seen = statuses(a) + statuses(b)
    assert "server-reconnecting" in seen, seen
    # The session was resumed, not rejoined: same peer connection, and signaling works.
    for page in (a, b):
        assert page.evaluate("window.__pcs.length") == 1
    force_ice_failure_and_recover(a, b)
    never_left(a, b)
    assert axe_violations(a) == []
