import { beforeEach, describe, expect, it } from "vitest";
import {
  SignalingClient,
  extractCandidate,
  extractDescription,
  signalUrl,
  type ClientOptions,
} from "../src/signaling";
import { FakeChannel, FakeChat, FakePeerConnection, FakeSocket, FakeTimers, settle } from "./fakes";

interface Harness {
  client: SignalingClient;
  /** What the chat layer above the DataChannel was told. */
  chat: FakeChat;
  sockets: FakeSocket[];
  timers: FakeTimers;
  /** The most recently created socket. */
  ws: () => FakeSocket;
  /** The most recently created peer connection. */
  pc: () => FakePeerConnection;
}

function setup(extra: Partial<ClientOptions> = {}): Harness {
  const sockets: FakeSocket[] = [];
  const timers = new FakeTimers();
  const chat = new FakeChat("mcp-chat.v1");
  const client = new SignalingClient({
    url: "ws://example.test/ws/signal/?room=r1",
    room: "r1",
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    createPeerConnection: (config) => new FakePeerConnection(config),
    timers,
    random: () => 0,
    backoff: { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.2 },
    channel: chat,
    ...extra,
  });
  return {
    client,
    chat,
    sockets,
    timers,
    ws: () => sockets[sockets.length - 1]!,
    pc: () => FakePeerConnection.created[FakePeerConnection.created.length - 1]!,
  };
}

beforeEach(() => {
  FakePeerConnection.created = [];
  FakePeerConnection.nextRemoteGate = null;
});

describe("helpers", () => {
  it("derives the socket URL from the page location", () => {
    expect(signalUrl({ protocol: "http:", host: "localhost:8080" }, "my room")).toBe(
      "ws://localhost:8080/ws/signal/?room=my%20room",
    );
    expect(signalUrl({ protocol: "https:", host: "chat.example.org" }, "a&b")).toBe(
      "wss://chat.example.org/ws/signal/?room=a%26b",
    );
    expect(signalUrl({ protocol: "http:", host: "h" }, "r", "v1.a+b/c")).toBe(
      "ws://h/ws/signal/?room=r&token=v1.a%2Bb%2Fc",
    );
  });

  it("accepts both offer shapes", () => {
    expect(extractDescription({ type: "offer", sdp: "S" }, "offer")).toEqual({ type: "offer", sdp: "S" });
    expect(extractDescription({ type: "offer", offer: { type: "offer", sdp: "S" } }, "offer")).toEqual({
      type: "offer",
      sdp: "S",
    });
    expect(extractDescription({ type: "answer", answer: { type: "answer", sdp: "A" } }, "answer")).toEqual({
      type: "answer",
      sdp: "A",
    });
    expect(extractDescription({ type: "offer" }, "offer")).toBeNull();
  });

  it("accepts nested and flat candidate shapes", () => {
    expect(
      extractCandidate({ type: "candidate", candidate: { candidate: "candidate:1", sdpMid: "0", sdpMLineIndex: 0 } }),
    ).toEqual({ candidate: "candidate:1", sdpMid: "0", sdpMLineIndex: 0 });
    expect(extractCandidate({ type: "candidate", candidate: "candidate:2", sdpMLineIndex: 0 })).toEqual({
      candidate: "candidate:2",
      sdpMid: null,
      sdpMLineIndex: 0,
    });
    expect(extractCandidate({ type: "candidate", candidate: null })).toBeNull();
  });
});

describe("SignalingClient", () => {
  it("opens the socket and reports connecting, then waiting when first in the room", async () => {
    const h = setup();
    const seen: string[] = [];
    h.client.subscribe((s) => seen.push(s.status));
    h.client.start();
    expect(h.client.getState().status).toBe("connecting");
    expect(h.ws().url).toBe("ws://example.test/ws/signal/?room=r1&resumable=1");
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    await settle();
    expect(h.client.getState().status).toBe("waiting");
    expect(FakePeerConnection.created).toHaveLength(0);
    expect(h.ws().sent).toEqual([]);
    expect(seen).toContain("connecting");
  });

  it("glare avoidance: only the initiator offers; the waiting peer only answers", async () => {
    // First peer: joined(initiator=false), then peer-joined → must NOT offer.
    const a = setup();
    a.client.start();
    a.ws().open();
    a.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    a.ws().receive({ type: "peer-joined", room: "r1", peers: 2 });
    await settle();
    expect(a.client.getState().status).toBe("peer-connecting");
    expect(a.ws().sentOfType("offer")).toHaveLength(0);
    expect(FakePeerConnection.created).toHaveLength(0);

    // Second peer: joined(initiator=true) → creates the channel and offers.
    FakePeerConnection.created = [];
    const b = setup();
    b.client.start();
    b.ws().open();
    b.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    const bpc = b.pc();
    expect(bpc.calls.slice(0, 3)).toEqual(["createDataChannel:chat", "createOffer", "setLocalDescription:offer"]);
    expect(b.ws().sentOfType("offer")).toEqual([{ type: "offer", sdp: "v=0 offer", pc: expect.any(String) }]);
    expect(bpc.config).toEqual({ iceServers: [] });

    // A answers B's offer, in the documented shape.
    a.ws().receive(b.ws().sentOfType("offer")[0]);
    await settle();
    const apc = FakePeerConnection.created.find((p) => p !== bpc) ?? a.pc();
    expect(apc.calls).toEqual(["setRemoteDescription:offer", "createAnswer", "setLocalDescription:answer"]);
    expect(a.ws().sentOfType("answer")).toEqual([{ type: "answer", sdp: "v=0 answer", pc: expect.any(String) }]);
    expect(a.ws().sentOfType("offer")).toHaveLength(0);

    b.ws().receive(a.ws().sentOfType("answer")[0]);
    await settle();
    expect(bpc.calls).toContain("setRemoteDescription:answer");
  });

  it("accepts the legacy nested offer shape", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    h.ws().receive({ type: "offer", offer: { type: "offer", sdp: "v=0 nested" } });
    await settle();
    expect(h.pc().remoteDescription).toEqual({ type: "offer", sdp: "v=0 nested" });
    expect(h.ws().sentOfType("answer")).toHaveLength(1);
  });

  it("trickles local candidates in the documented shape and skips end-of-candidates", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    h.pc().emitCandidate("candidate:1 1 udp 1 127.0.0.1 5000 typ host");
    h.pc().emitCandidate(null);
    expect(h.ws().sentOfType("candidate")).toEqual([
      {
        type: "candidate",
        candidate: { candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", sdpMid: "0", sdpMLineIndex: 0 },
        pc: h.ws().sentOfType("offer")[0]!.pc,
      },
    ]);
  });

  it("queues candidates that arrive before the remote description", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    h.ws().receive({ type: "peer-joined", room: "r1", peers: 2 });
    // Candidate before the offer even exists (no peer connection yet).
    h.ws().receive({ type: "candidate", candidate: { candidate: "c-early", sdpMid: "0", sdpMLineIndex: 0 } });
    await settle();
    expect(FakePeerConnection.created).toHaveLength(0);

    // Offer whose setRemoteDescription is slow; candidates arrive meanwhile.
    let release!: () => void;
    FakePeerConnection.nextRemoteGate = new Promise<void>((r) => (release = r));
    h.ws().receive({ type: "offer", sdp: "v=0 offer" });
    h.ws().receive({ type: "candidate", candidate: { candidate: "c-mid", sdpMid: "0", sdpMLineIndex: 0 } });
    await settle();
    const pc = h.pc();
    expect(pc.calls).toEqual(["setRemoteDescription:offer"]);
    expect(pc.added).toEqual([]);
    release();
    await settle();
    expect(pc.remoteDescription).toEqual({ type: "offer", sdp: "v=0 offer" });
    expect(pc.added.map((c) => c.candidate)).toEqual(["c-early", "c-mid"]);

    h.ws().receive({ type: "candidate", candidate: { candidate: "c-late", sdpMid: "0", sdpMLineIndex: 0 } });
    await settle();
    expect(pc.added.map((c) => c.candidate)).toEqual(["c-early", "c-mid", "c-late"]);
    // addIceCandidate only after setRemoteDescription.
    expect(pc.calls.indexOf("setRemoteDescription:offer")).toBeLessThan(pc.calls.indexOf("addIceCandidate:c-early"));
  });

  it("queues candidates received while the initiator waits for the answer", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    const pc = h.pc();
    h.ws().receive({ type: "candidate", candidate: { candidate: "c1", sdpMid: "0", sdpMLineIndex: 0 } });
    h.ws().receive({ type: "candidate", candidate: "c2", sdpMid: "0", sdpMLineIndex: 0 });
    await settle();
    expect(pc.added).toEqual([]);
    h.ws().receive({ type: "answer", sdp: "v=0 answer" });
    await settle();
    expect(pc.added.map((c) => c.candidate)).toEqual(["c1", "c2"]);
  });

  it("reports connected when the chat channel opens; raw text goes both ways untouched, in order", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    h.ws().receive({ type: "peer-joined", room: "r1", peers: 2 });
    h.ws().receive({ type: "offer", sdp: "v=0 offer" });
    await settle();
    expect(h.client.getState().canSend).toBe(false);
    expect(h.client.sendRaw("too early")).toBe(false);
    // The peer created the channel, announcing its sub-protocol.
    const ch = h.pc().remoteOpensChannel("chat", "mcp-chat.v1");
    let seenByChatFirst = false;
    h.client.subscribe((s) => {
      if (s.status === "connected") seenByChatFirst = h.chat.events.length === 1;
    });
    ch.fireOpen();
    expect(h.client.getState().status).toBe("connected");
    expect(h.client.getState().canSend).toBe(true);
    // The chat layer hears of the channel before the view sees "connected".
    expect(seenByChatFirst).toBe(true);
    expect(h.chat.events).toEqual(["opened:mcp-chat.v1:false"]);
    expect(h.client.sendRaw("  hello  ")).toBe(true);
    expect(h.client.sendRaw('{"mcp":"chat"}')).toBe(true);
    ch.fireMessage("hi back");
    ch.fireMessage("");
    expect(ch.sent).toEqual(["  hello  ", '{"mcp":"chat"}']);
    expect(h.chat.texts).toEqual(["hi back"]);
  });

  it("the channel it creates announces the chat layer's sub-protocol", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    const ch = h.pc().channels[0]!;
    expect(ch.protocol).toBe("mcp-chat.v1");
    ch.fireOpen();
    expect(h.chat.events).toEqual(["opened:mcp-chat.v1:true"]);
  });

  it("a chat layer without a sub-protocol gets a plain channel", async () => {
    const h = setup({ channel: new FakeChat("") });
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    expect(h.pc().calls).toContain("createDataChannel:chat");
    expect(h.pc().channels[0]!.protocol).toBe("");
  });

  it("ignores data channels with other labels", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    h.ws().receive({ type: "offer", sdp: "v=0 offer" });
    await settle();
    h.pc().remoteOpensChannel("other").fireOpen();
    expect(h.client.getState().status).toBe("peer-connecting");
  });

  it("room full: shows the error, stops, and does not reconnect", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "error", code: "room_full", message: "Room is full" });
    h.ws().serverClose(4409);
    await settle();
    const s = h.client.getState();
    expect(s.status).toBe("room-full");
    expect(s.error).toBe("Room is full");
    h.timers.runAll();
    expect(h.sockets).toHaveLength(1);
    expect(h.timers.pending.size).toBe(0);
  });

  it("room full via close code alone also stops", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().serverClose(4409);
    await settle();
    expect(h.client.getState().status).toBe("room-full");
    expect(h.timers.pending.size).toBe(0);
  });

  it("non-fatal server errors are shown but keep the session", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    h.ws().receive({ type: "error", code: "invalid_json", message: "Invalid JSON" });
    h.ws().receive({ type: "info", code: "no_peer", message: "No other peer" });
    h.ws().receive("not json");
    await settle();
    expect(h.client.getState().status).toBe("waiting");
    expect(h.client.getState().error).toBe("Invalid JSON");
  });

  it("peer left, then a new peer joins: reconnects on a fresh peer connection", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    const first = h.pc();
    h.ws().receive({ type: "answer", sdp: "v=0 answer" });
    await settle();
    first.channels[0]!.fireOpen();
    expect(h.client.getState().status).toBe("connected");

    h.ws().receive({ type: "leave" });
    await settle();
    expect(h.client.getState().status).toBe("peer-left");
    expect(h.client.getState().canSend).toBe(false);
    expect(first.closed).toBe(true);
    h.ws().receive({ type: "peer-left", room: "r1", peers: 1 });
    await settle();
    expect(h.client.getState().status).toBe("peer-left");
    expect(h.chat.events).toEqual(["opened:mcp-chat.v1:true", "closed"]);

    // The newcomer is the initiator: we wait for its offer, never offer ourselves.
    h.ws().receive({ type: "peer-joined", room: "r1", peers: 2 });
    await settle();
    expect(h.client.getState().status).toBe("peer-connecting");
    h.ws().receive({ type: "offer", sdp: "v=0 offer2" });
    await settle();
    const second = h.pc();
    expect(second).not.toBe(first);
    expect(h.ws().sentOfType("offer")).toHaveLength(1); // only the first, as initiator
    expect(h.ws().sentOfType("answer")).toHaveLength(1);
    second.remoteOpensChannel().fireOpen();
    expect(h.client.getState().status).toBe("connected");
    expect(h.chat.events).toEqual(["opened:mcp-chat.v1:true", "closed", "opened::false"]);
    expect(h.sockets).toHaveLength(1); // no page reload / new socket needed
  });

  it("a stale channel closing after peer-left does not change state", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    const ch = h.pc().channels[0]!;
    ch.fireOpen();
    h.ws().receive({ type: "peer-left", room: "r1", peers: 1 });
    await settle();
    h.ws().receive({ type: "peer-joined", room: "r1", peers: 2 });
    await settle();
    ch.fireClose();
    expect(h.client.getState().status).toBe("peer-connecting");
  });

  it("data channel closing while the peer is still in the room is not a departure", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    const ch = h.pc().channels[0]!;
    ch.fireOpen();
    ch.fireClose();
    expect(h.client.getState().status).toBe("ice-restarting");
    expect(h.chat.events).toEqual(["opened:mcp-chat.v1:true", "closed"]);
    // Only the server's leave/peer-left means the peer left; the chat layer heard "closed" once.
    h.ws().receive({ type: "leave" });
    h.ws().receive({ type: "peer-left", room: "r1", peers: 1 });
    await settle();
    expect(h.client.getState().status).toBe("peer-left");
    expect(h.chat.events).toEqual(["opened:mcp-chat.v1:true", "closed"]);
  });

  it("reconnects with exponential backoff when the socket drops, then rejoins", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    const pc = h.pc();
    pc.channels[0]!.fireOpen();

    h.ws().serverClose(1006);
    await settle();
    // The DataChannel does not need the server: the chat goes on meanwhile.
    expect(h.client.getState().status).toBe("server-reconnecting");
    expect(h.client.getState().canSend).toBe(true);
    expect(pc.closed).toBe(false);
    expect(h.timers.pendingDelays()).toEqual([100]);
    // The peer really goes away during the outage: no open channel, plain reconnecting.
    pc.channels[0]!.fireClose();
    expect(h.client.getState().status).toBe("reconnecting");
    expect(h.client.getState().canSend).toBe(false);

    h.timers.runAll();
    expect(h.sockets).toHaveLength(2);
    h.ws().serverClose(1013); // server temporarily unavailable: retry again, slower
    await settle();
    expect(h.client.getState().status).toBe("reconnecting");
    expect(h.client.getState().attempt).toBe(2);
    h.timers.runAll();
    h.ws().serverClose(1006);
    await settle();
    h.timers.runAll();
    h.ws().serverClose(1006);
    await settle();
    h.timers.runAll();
    h.ws().serverClose(1006);
    await settle();
    // (The first timer was the peer connection's connect timeout, cleared when the channel opened.)
    expect(h.timers.delays).toEqual([15_000, 100, 200, 400, 800, 1000]);

    h.timers.runAll();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    await settle();
    expect(h.client.getState().status).toBe("waiting");
    expect(h.client.getState().attempt).toBe(0);

    // Backoff resets after a successful join.
    h.ws().serverClose(1001);
    await settle();
    expect(h.timers.delays.at(-1)).toBe(100);
  });

  it("applies jitter to the backoff delay", async () => {
    const h = setup({ random: () => 1 });
    h.client.start();
    h.ws().serverClose(1006);
    await settle();
    expect(h.timers.delays).toEqual([80]);
  });

  it("leave: tells the peer, closes the peer connection and the socket, no reconnect", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    const pc = h.pc();
    const ch = pc.channels[0]!;
    ch.fireOpen();
    const ws = h.ws();
    h.client.leave();
    expect(ws.sentOfType("leave")).toEqual([{ type: "leave" }]);
    expect(ws.closedWith).toEqual({ code: 1000, reason: "leave" });
    expect(pc.closed).toBe(true);
    expect(ch.readyState).toBe("closed");
    await settle();
    expect(h.client.getState().status).toBe("disconnected");
    expect(h.timers.pending.size).toBe(0);
    expect(h.sockets).toHaveLength(1);
    // Late events are ignored.
    ws.receive({ type: "peer-joined" });
    await settle();
    expect(h.client.getState().status).toBe("disconnected");
  });

  it("retryNow skips the backoff delay while reconnecting, and is a no-op otherwise", async () => {
    const h = setup();
    h.client.start();
    h.client.retryNow();
    expect(h.sockets).toHaveLength(1);
    h.ws().serverClose(1013);
    await settle();
    expect(h.timers.pending.size).toBe(1);
    h.client.retryNow();
    expect(h.timers.pending.size).toBe(0);
    expect(h.sockets).toHaveLength(2);
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    await settle();
    expect(h.client.getState().status).toBe("waiting");
  });

  it("leave while reconnecting cancels the retry", async () => {
    const h = setup();
    h.client.start();
    h.ws().serverClose(1006);
    await settle();
    expect(h.timers.pending.size).toBe(1);
    h.client.leave();
    expect(h.timers.pending.size).toBe(0);
    expect(h.client.getState().status).toBe("disconnected");
  });

  it("passes configured ICE servers to the peer connection", async () => {
    const iceServers = [{ urls: "stun:stun.example.org:3478" }];
    const h = setup({ iceServers });
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    expect(h.pc().config).toEqual({ iceServers });
  });
});

describe("SignalingClient channel handover", () => {
  it("an already-open channel that also fires open is reported once", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    h.ws().receive({ type: "offer", sdp: "v=0 offer" });
    await settle();
    const pc = h.pc();
    const ch = new FakeChannel("chat");
    ch.readyState = "open";
    pc.ondatachannel?.({ channel: ch });
    ch.fireOpen();
    expect(h.client.getState().status).toBe("connected");
    expect(h.chat.events).toEqual(["opened::false"]);
  });
});

describe("SignalingClient refusals", () => {
  it.each([
    [4400, "invalid_room", "Invalid room name: the room name is empty"],
    [4401, "invalid_token", "Invalid room token"],
    [4401, "token_expired", "Room token expired"],
  ])("close %i after %s: refused for good, error shown, no retry", async (code, errCode, message) => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "error", code: errCode, message });
    h.ws().serverClose(code);
    await settle();
    expect(h.client.getState().status).toBe("refused");
    expect(h.client.getState().error).toBe(message);
    expect(h.timers.pending.size).toBe(0);
  });

  it.each([4400, 4401, 4411, 4429])("close %i alone is fatal too", async (code) => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().serverClose(code);
    await settle();
    expect(h.client.getState().status).toBe("refused");
    expect(h.client.getState().error).toBeTruthy();
    expect(h.timers.pending.size).toBe(0);
  });

  it.each([1001, 1006, 1009, 1011, 1013, 4008])("close %i is retried", async (code) => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    await settle();
    h.ws().serverClose(code);
    await settle();
    expect(h.client.getState().status).toBe("reconnecting");
    expect(h.timers.pending.size).toBe(1);
  });

  it("a rate_limited warning keeps the session", async () => {
    const h = setup();
    h.client.start();
    h.ws().open();
    h.ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    h.ws().receive({ type: "error", code: "rate_limited", message: "Too many messages; slow down" });
    await settle();
    expect(h.client.getState().status).toBe("waiting");
    expect(h.client.getState().error).toBe("Too many messages; slow down");
  });
});
