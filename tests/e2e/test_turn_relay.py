"""Two Chromium pages chat through a real coturn with the TURN credentials of their joined events.

The server runs with ``--turn-uri`` and ``--turn-secret-file`` pointing at a
coturn of the test's own (tests/coturn.py).  Each page drives a raw
``RTCPeerConnection`` (no React client): it connects the signaling WebSocket,
takes ``iceServers`` from its ``joined`` event, and exchanges offer, answer
and candidates through the server, with ``iceTransportPolicy: "relay"`` so
that only relayed candidates exist.  The DataChannel carries a message each
way, and ``getStats()`` shows the selected candidate pair: relay on both ends.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.coturn import Coturn, running_coturn

from .conftest import PageFactory, ServerProcess

# window.turnPeer: one raw RTCPeerConnection signaled through the server.
PEER_SCRIPT = """
() => {
  const peer = { events: [], received: [], candidates: [] };
  let ws, pc, channel, pending = [];
  let openedResolve, receivedResolve;
  peer.opened = new Promise((resolve) => { openedResolve = resolve; });
  peer.gotMessage = new Promise((resolve) => { receivedResolve = resolve; });

  const attach = (dc) => {
    channel = dc;
    dc.onopen = () => openedResolve(true);
    dc.onmessage = (event) => { peer.received.push(event.data); receivedResolve(event.data); };
  };
  const send = (message) => ws.send(JSON.stringify(message));
  const flush = async () => {
    for (const candidate of pending.splice(0)) await pc.addIceCandidate(candidate);
  };
  const newPeer = (iceServers) => {
    pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: "relay" });
    pc.onicecandidate = (event) => {
      if (event.candidate) {
        peer.candidates.push(event.candidate.candidate);
        send({ type: "candidate", candidate: event.candidate.toJSON() });
      }
    };
    pc.ondatachannel = (event) => attach(event.channel);
  };

  peer.join = (url) => new Promise((resolve, reject) => {
    ws = new WebSocket(url);
    ws.onerror = () => reject(new Error("signaling socket failed"));
    ws.onmessage = async (event) => {
      const message = JSON.parse(event.data);
      peer.events.push(message.type);
      if (message.type === "joined") {
        newPeer(message.iceServers || []);
        if (message.initiator) {
          attach(pc.createDataChannel("chat"));
          await pc.setLocalDescription(await pc.createOffer());
          send({ type: "offer", sdp: pc.localDescription.sdp });
        }
        resolve(message);
      } else if (message.type === "offer") {
        await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
        await flush();
        await pc.setLocalDescription(await pc.createAnswer());
        send({ type: "answer", sdp: pc.localDescription.sdp });
      } else if (message.type === "answer") {
        await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
        await flush();
      } else if (message.type === "candidate") {
        if (pc.remoteDescription) await pc.addIceCandidate(message.candidate);
        else pending.push(message.candidate);
      }
    };
  });

  peer.send = (text) => channel.send(text);
  // A promise that fails after a while, so that evaluate() never hangs.
  peer.within = (promise, what, ms = 30000) => Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: timed out`)), ms)),
  ]);

  // The selected candidate pair's local and remote candidates, from getStats().
  peer.selectedPair = async () => {
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((report) => {
      if (report.type === "transport" && report.selectedCandidatePairId) {
        pairId = report.selectedCandidatePairId;
      }
    });
    const pair = pairId && stats.get(pairId);
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return {
      state: pair.state,
      bytesSent: pair.bytesSent,
      bytesReceived: pair.bytesReceived,
      local: {
        type: local.candidateType, address: local.address, relayProtocol: local.relayProtocol,
      },
      remote: { type: remote.candidateType, address: remote.address },
    };
  };
  window.turnPeer = peer;
}
"""

SECRET = secrets.token_hex(24).encode()


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    with running_coturn(tmp_path, SECRET) as turn:
        yield turn


@pytest.fixture
def turn_server(coturn: Coturn, tmp_path: Path) -> Iterator[ServerProcess]:
    """``serve`` with two workers, handing out credentials for ``coturn``."""
    secret_file = tmp_path / "turn-secret"
    secret_file.write_bytes(SECRET + b"\n")
    secret_file.chmod(0o600)
    server = ServerProcess(
        "e2e-server-turn-relay",
        extra_args=["--turn-uri", coturn.uri("udp"), "--turn-secret-file", str(secret_file)],
    )
    if server.log_path.exists():
        server.log_path.unlink()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_two_pages_open_a_data_channel_through_the_turn_relay(
    turn_server: ServerProcess, coturn: Coturn, new_page: PageFactory, room: str
) -> None:
    info = turn_server.info
    pages = [new_page(f"{info.base_url}/healthz") for _ in range(2)]  # same origin, no client
    for page in pages:
        page.evaluate(PEER_SCRIPT)

    joined: list[dict[str, Any]] = [
        page.evaluate("url => turnPeer.within(turnPeer.join(url), 'joined')", info.ws_url(room))
        for page in pages
    ]
    assert [event["initiator"] for event in joined] == [False, True]
    usernames = set()
    for event in joined:
        (turn,) = event["iceServers"]
        assert turn["urls"] == [coturn.uri("udp")]
        assert set(turn) == {"urls", "username", "credential"}
        usernames.add(turn["username"])
    assert len(usernames) == 2  # the two peers of the room got their own

    for page in pages:
        assert page.evaluate("turnPeer.within(turnPeer.opened, 'channel open')") is True
    pages[0].evaluate("window.turnPeer.send('hello through the relay')")
    pages[1].evaluate("window.turnPeer.send('and back')")
    received = "turnPeer.within(turnPeer.gotMessage, 'message')"
    assert pages[1].evaluate(received) == "hello through the relay"
    assert pages[0].evaluate(received) == "and back"

    for page in pages:
        gathered = page.evaluate("window.turnPeer.candidates")
        assert gathered and all(" typ relay " in line for line in gathered), gathered
        pair = page.evaluate("window.turnPeer.selectedPair()")
        assert pair is not None, page.evaluate("window.turnPeer.events")
        assert pair["state"] == "succeeded"
        assert pair["local"]["type"] == "relay" and pair["remote"]["type"] == "relay", pair
        assert pair["local"]["relayProtocol"] == "udp"
        assert pair["local"]["address"] == coturn.host
        assert pair["bytesSent"] > 0 and pair["bytesReceived"] > 0
