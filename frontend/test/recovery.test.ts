/**
 * Recovery and perfect negotiation, with two SignalingClients wired through a
 * fake server: crossing offers, ICE failure and restart, connect timeout, a
 * DataChannel that drops while the peer is still in the room, signaling lost
 * and resumed with the peer connection kept, resume refused then a fresh join.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { NO_TURN_ADVICE, SignalingClient, TURN_FAILED_ADVICE, type ClientOptions } from "../src/signaling";
import { FakeChat, FakePeerConnection, FakeSocket, FakeTimers, settle } from "./fakes";

const PROTOCOL = "mcp-chat.v1";

class Side {
  readonly sockets: FakeSocket[] = [];
  readonly pcs: FakePeerConnection[] = [];
  /** What the chat layer was told: channel opened / closed, text received. */
  readonly chat = new FakeChat(PROTOCOL);
  /** Every status the client went through, in order. */
  readonly statuses: string[] = [];
  readonly client: SignalingClient;
  constructor(
    readonly name: string,
    timers: FakeTimers,
    extra: Partial<ClientOptions> = {},
  ) {
    this.client = new SignalingClient({
      url: `ws://example.test/ws/signal/?room=r1`,
      room: "r1",
      createSocket: (url) => {
        const s = new FakeSocket(url);
        this.sockets.push(s);
        return s;
      },
      createPeerConnection: (config) => {
        const pc = new FakePeerConnection(config);
        this.pcs.push(pc);
        return pc;
      },
      timers,
      random: () => 0,
      backoff: { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.2 },
      peerBackoff: { initialMs: 1000, maxMs: 8000, factor: 2, jitter: 0 },
      channel: this.chat,
      ...extra,
    });
    this.client.subscribe((s) => {
      if (this.statuses[this.statuses.length - 1] !== s.status) this.statuses.push(s.status);
    });
  }
  get ws(): FakeSocket {
    return this.sockets[this.sockets.length - 1]!;
  }
  get pc(): FakePeerConnection {
    return this.pcs[this.pcs.length - 1]!;
  }
  get status(): string {
    return this.client.getState().status;
  }
}

/** Plays the server's relay between the two sides' current sockets. */
class Wire {
  private delivered = new Map<FakeSocket, number>();
  constructor(
    readonly a: Side,
    readonly b: Side,
  ) {}

  /** Deliver what each side sent to the other (both sockets open), until quiet. */
  async pump(): Promise<void> {
    for (let round = 0; round < 50; round++) {
      await settle();
      let moved = false;
      for (const [from, to] of [
        [this.a, this.b],
        [this.b, this.a],
      ] as const) {
        const src = from.ws;
        const dst = to.ws;
        const start = this.delivered.get(src) ?? 0;
        const pending = src.sent.slice(start);
        if (pending.length === 0 || src.readyState !== 1 || dst.readyState !== 1) continue;
        this.delivered.set(src, src.sent.length);
        for (const m of pending) if (m.type !== "leave") dst.receive(m);
        moved = true;
      }
      if (!moved) return;
    }
    throw new Error("signaling never went quiet (offers ping-ponging?)");
  }

  /** Count everything sent so far as delivered (the test delivers it by hand). */
  skip(): void {
    for (const side of [this.a, this.b]) this.delivered.set(side.ws, side.ws.sent.length);
  }

  /** What the test's "network" does once negotiated: ICE connects, the channel opens. */
  link(): void {
    for (const side of [this.a, this.b]) side.pc.setConnectionState("connected");
    const offerer = this.b.pc.channels.length > 0 ? this.b : this.a;
    const answerer = offerer === this.b ? this.a : this.b;
    const ch = offerer.pc.channels[offerer.pc.channels.length - 1]!;
    ch.fireOpen();
    answerer.pc.remoteOpensChannel("chat", ch.protocol).fireOpen();
  }
}

/** A joins first (polite), B second (initiator, impolite); both connected. */
async function connectedPair(
  timers: FakeTimers,
  extra: Partial<ClientOptions> = {},
  joined: Record<string, unknown> = {},
): Promise<Wire> {
  const a = new Side("A", timers, extra);
  const b = new Side("B", timers, extra);
  const wire = new Wire(a, b);
  a.client.start();
  a.ws.open();
  a.ws.receive({ type: "joined", room: "r1", peers: 1, initiator: false, resume: "ta1", ...joined });
  b.client.start();
  b.ws.open();
  b.ws.receive({ type: "joined", room: "r1", peers: 2, initiator: true, resume: "tb1", ...joined });
  a.ws.receive({ type: "peer-joined", room: "r1", peers: 2 });
  await wire.pump();
  wire.link();
  await settle();
  expect(a.status).toBe("connected");
  expect(b.status).toBe("connected");
  return wire;
}

let timers: FakeTimers;
beforeEach(() => {
  FakePeerConnection.created = [];
  timers = new FakeTimers();
});

describe("perfect negotiation", () => {
  it.each([
    ["A's offer delivered first", "a-first"],
    ["B's offer delivered first", "b-first"],
  ])("ICE restarts from both sides at once: offers cross, no hang (%s)", async (_name, order) => {
    const wire = await connectedPair(timers);
    const { a, b } = wire;
    const pcA = a.pc;
    const pcB = b.pc;
    const aSent = a.ws.sent.length;
    const bSent = b.ws.sent.length;
    pcA.setConnectionState("failed");
    pcB.setConnectionState("failed");
    await settle();
    expect(a.status).toBe("ice-restarting");
    expect(b.status).toBe("ice-restarting");
    // Both made an ICE-restart offer: they cross on the wire.
    const offerA = a.ws.sent.slice(aSent).filter((m) => m.type === "offer");
    const offerB = b.ws.sent.slice(bSent).filter((m) => m.type === "offer");
    expect(offerA).toHaveLength(1);
    expect(offerB).toHaveLength(1);
    expect(pcA.signalingState).toBe("have-local-offer");
    expect(pcB.signalingState).toBe("have-local-offer");
    wire.skip();
    if (order === "a-first") {
      b.ws.receive(offerA[0]);
      a.ws.receive(offerB[0]);
    } else {
      a.ws.receive(offerB[0]);
      b.ws.receive(offerA[0]);
    }
    await settle();
    // The impolite side (B, the initiator) ignored A's offer; polite A rolled back and answered.
    expect(pcA.calls).toContain("setLocalDescription:rollback");
    expect(pcB.calls).not.toContain("setLocalDescription:rollback");
    expect(pcB.calls.filter((c) => c === "setRemoteDescription:offer")).toHaveLength(0);
    // Deliver the rest (A's answer, then A's own pending restart): everything settles.
    await wire.pump();
    expect(pcA.signalingState).toBe("stable");
    expect(pcB.signalingState).toBe("stable");
    expect(pcA.iceGeneration).toBeGreaterThan(0);
    expect(pcB.iceGeneration).toBeGreaterThan(0);
    pcA.setConnectionState("connected");
    pcB.setConnectionState("connected");
    await settle();
    expect(a.status).toBe("connected");
    expect(b.status).toBe("connected");
    // Same peer connections throughout; nobody "left".
    expect(a.pcs).toHaveLength(1);
    expect(b.pcs).toHaveLength(1);
    // The chat channel was never lost: the chat layer heard of it once.
    expect(a.chat.events).toEqual([`opened:${PROTOCOL}:false`]);
    expect(b.chat.events).toEqual([`opened:${PROTOCOL}:true`]);
    expect(a.statuses).not.toContain("peer-left");
    expect(b.statuses).not.toContain("peer-left");
  });

  it("a renegotiation offer from the polite side is answered on the same connection", async () => {
    const wire = await connectedPair(timers);
    const { a, b } = wire;
    a.pc.restartIce();
    await wire.pump();
    expect(b.pcs).toHaveLength(1);
    expect(b.pc.calls.filter((c) => c === "setRemoteDescription:offer")).toHaveLength(1);
    expect(a.pc.signalingState).toBe("stable");
    expect(b.pc.signalingState).toBe("stable");
  });
});

describe("older peers (untagged messages)", () => {
  it("an untagged offer the current connection cannot take is answered on a new one", async () => {
    const a = new Side("A", timers);
    a.client.start();
    a.ws.open();
    a.ws.receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    a.ws.receive({ type: "peer-joined", room: "r1", peers: 2 });
    a.ws.receive({ type: "offer", sdp: "v=0 old client" });
    await settle();
    const first = a.pc;
    first.remoteOpensChannel().fireOpen();
    expect(a.status).toBe("connected");
    first.rejectNextRemote = new Error("InvalidAccessError: DTLS fingerprint changed");
    a.ws.receive({ type: "offer", sdp: "v=0 old client, new connection" });
    await settle();
    expect(a.pcs).toHaveLength(2);
    expect(a.pc.remoteDescription).toEqual({ type: "offer", sdp: "v=0 old client, new connection" });
    expect(a.ws.sentOfType("answer")).toHaveLength(2);
    expect(a.client.getState().error).toBeNull();
    // The old channel carries the chat until the new one opens.
    expect(a.status).toBe("connected");
    expect(first.closed).toBe(false);
  });
});

describe("a network failure is not a departure", () => {
  it("ICE failure on one side: ICE restart through signaling, same connection, back to connected", async () => {
    const wire = await connectedPair(timers);
    const { a, b } = wire;
    b.pc.setConnectionState("failed");
    await settle();
    expect(b.pc.calls).toContain("restartIce");
    expect(b.status).toBe("ice-restarting");
    await wire.pump();
    expect(a.pc.iceGeneration).toBe(1); // A took the restart offer on its existing connection
    expect(a.pcs).toHaveLength(1);
    b.pc.setConnectionState("connected");
    await settle();
    expect(b.status).toBe("connected");
    expect(b.statuses.slice(-3)).toEqual(["connected", "ice-restarting", "connected"]);
    expect(b.chat.events).toEqual([`opened:${PROTOCOL}:true`]);
  });

  it("disconnected heals by itself within the grace; past it, ICE restarts", async () => {
    const wire = await connectedPair(timers, { disconnectGraceMs: 4000 });
    const { a } = wire;
    a.pc.setConnectionState("disconnected");
    timers.advance(3000);
    a.pc.setConnectionState("connected");
    timers.advance(5000);
    expect(a.pc.calls).not.toContain("restartIce");
    a.pc.setConnectionState("disconnected");
    expect(a.status).toBe("connected");
    timers.advance(4000);
    expect(a.pc.calls).toContain("restartIce");
    await wire.pump();
    a.pc.setConnectionState("connected");
    await settle();
    expect(a.status).toBe("connected");
  });

  it("the DataChannel drops while the peer is still in the room: a fresh connection, no 'Peer left'", async () => {
    const wire = await connectedPair(timers);
    const { a, b } = wire;
    const oldA = a.pc;
    const oldB = b.pc;
    // Forced: A's connection is closed under it; both channels report the loss.
    oldA.close();
    oldA.channels[0]!.fireClose();
    oldB.channels[0]!.fireClose();
    await settle();
    expect(a.status).toBe("ice-restarting");
    expect(b.status).toBe("ice-restarting");
    expect(a.client.getState().canSend).toBe(false);
    // The initiator (B) negotiates a new connection; A answers it on a new one too.
    expect(b.pcs).toHaveLength(2);
    await wire.pump();
    expect(a.pcs).toHaveLength(2);
    wire.link();
    await settle();
    expect(a.status).toBe("connected");
    expect(b.status).toBe("connected");
    expect(oldB.closed).toBe(true);
    expect(a.statuses).not.toContain("peer-left");
    // The chat layer: channel gone (unacknowledged messages fail), then a new one.
    expect(a.chat.events).toEqual(["opened:mcp-chat.v1:false", "closed", "opened:mcp-chat.v1:false"]);
    expect(b.chat.events).toEqual(["opened:mcp-chat.v1:true", "closed", "opened:mcp-chat.v1:true"]);
    expect(b.client.sendRaw("after the repair")).toBe(true);
    expect(b.pc.channels[0]!.sent).toEqual(["after the repair"]);
  });
});

describe("a connection that never comes up", () => {
  it("times out, says what to do, then restarts ICE and negotiates afresh with backoff", async () => {
    const a = new Side("A", timers, { connectTimeoutMs: 15_000 });
    const b = new Side("B", timers, { connectTimeoutMs: 15_000 });
    const wire = new Wire(a, b);
    a.client.start();
    a.ws.open();
    a.ws.receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    b.client.start();
    b.ws.open();
    b.ws.receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    a.ws.receive({ type: "peer-joined", room: "r1", peers: 2 });
    await wire.pump();
    expect(b.status).toBe("peer-connecting");
    timers.advance(14_999);
    expect(b.client.getState().error).toBeNull();
    timers.advance(1);
    expect(b.client.getState().error).toBe(NO_TURN_ADVICE);
    expect(a.client.getState().error).toBe(NO_TURN_ADVICE);
    expect(b.status).toBe("peer-connecting");
    // Attempt 1, after the backoff: an ICE restart on the connection we have.
    timers.advance(1000);
    expect(b.pc.calls).toContain("restartIce");
    await wire.pump();
    expect(b.pcs).toHaveLength(1);
    // Still nothing: attempt 2, after a longer wait, a whole new connection.
    timers.advance(15_000);
    timers.advance(1999);
    expect(b.pcs).toHaveLength(1);
    timers.advance(1);
    expect(b.pcs).toHaveLength(2);
    await wire.pump();
    expect(a.pcs).toHaveLength(2); // A answered the fresh offer on a fresh connection
    expect(a.pcs[0]!.closed).toBe(true);
    wire.link();
    await settle();
    expect(b.status).toBe("connected");
    expect(b.client.getState().error).toBeNull();
    expect(a.client.getState().error).toBeNull();
  });

  it("uses the iceServers from joined, and tells that even the relay failed", async () => {
    const iceServers = [{ urls: ["turn:turn.test:3478?transport=udp"], username: "u", credential: "c" }];
    const b = new Side("B", timers, { iceServers: [{ urls: "stun:fallback.test:3478" }] });
    b.client.start();
    b.ws.open();
    b.ws.receive({ type: "joined", room: "r1", peers: 2, initiator: true, iceServers });
    await settle();
    expect(b.pc.config).toEqual({ iceServers });
    timers.advance(15_000);
    expect(b.client.getState().error).toBe(TURN_FAILED_ADVICE);
  });

  it("falls back to the client's own ICE servers when joined has none", async () => {
    const own = [{ urls: "stun:own.test:3478" }];
    const b = new Side("B", timers, { iceServers: own });
    b.client.start();
    b.ws.open();
    b.ws.receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    expect(b.pc.config).toEqual({ iceServers: own });
  });
});

describe("signaling lost", () => {
  it("keeps the peer connection and chats on; resumes with the token; partner sees peer-reconnecting", async () => {
    const wire = await connectedPair(timers);
    const { a, b } = wire;
    const pcA = a.pc;
    const first = a.ws;
    first.serverClose(1006);
    await settle();
    expect(a.status).toBe("server-reconnecting");
    expect(a.client.getState().canSend).toBe(true);
    expect(pcA.closed).toBe(false);
    // The DataChannel needs no server.
    expect(a.client.sendRaw("during the outage")).toBe(true);
    expect(pcA.channels[0]!.sent).toEqual(["during the outage"]);
    pcA.channels[0]!.fireMessage("reply during the outage");
    expect(a.chat.texts).toEqual(["reply during the outage"]);
    // The server tells B that A is away, not gone.
    b.ws.receive({ type: "peer-reconnecting", room: "r1" });
    await settle();
    expect(b.status).toBe("peer-reconnecting");
    expect(b.client.getState().canSend).toBe(true);

    // The reconnect (after the jittered backoff) carries the resume token, every try until it works.
    timers.advance(100);
    expect(a.ws).not.toBe(first);
    expect(a.ws.url).toBe("ws://example.test/ws/signal/?room=r1&resume=ta1");
    a.ws.serverClose(1006);
    await settle();
    timers.advance(200);
    expect(a.ws.url).toBe("ws://example.test/ws/signal/?room=r1&resume=ta1");
    a.ws.open();
    a.ws.receive({ type: "resumed", room: "r1", peers: 2, initiator: false, resume: "ta2", resumeGrace: 10 });
    b.ws.receive({ type: "peer-resumed", room: "r1" });
    await settle();
    expect(a.status).toBe("connected");
    expect(b.status).toBe("connected");
    expect(a.pcs).toHaveLength(1);
    expect(b.pcs).toHaveLength(1);
    expect(a.statuses).not.toContain("peer-left");
    expect(b.statuses).not.toContain("peer-left");
    expect(a.chat.events).toEqual([`opened:${PROTOCOL}:false`]);
    expect(b.chat.events).toEqual([`opened:${PROTOCOL}:true`]);
    // Signaling works again on the kept connection: an ICE restart goes through.
    b.pc.restartIce();
    await wire.pump();
    expect(pcA.iceGeneration).toBe(1);
    // The next drop uses the new token.
    a.ws.serverClose(1006);
    await settle();
    timers.advance(100);
    expect(a.ws.url).toBe("ws://example.test/ws/signal/?room=r1&resume=ta2");
  });

  it("resume refused (4410): joins afresh at once; the open DataChannel carries the chat until its replacement opens", async () => {
    const wire = await connectedPair(timers, { handoverMs: 3000 });
    const { a, b } = wire;
    const oldA = a.pc;
    const oldB = b.pc;
    // The server restarted: both sockets drop, neither resume works.
    a.ws.serverClose(1006);
    b.ws.serverClose(1006);
    await settle();
    expect(a.status).toBe("server-reconnecting");
    timers.advance(100);
    for (const side of [a, b]) {
      expect(side.ws.url).toContain("&resume=");
      side.ws.open();
      side.ws.receive({ type: "error", code: "invalid_resume", message: "Unknown resume token" });
      side.ws.serverClose(4410);
    }
    await settle();
    // At once, without a token; the refusal is not shown as an error.
    expect(a.ws.url).toBe("ws://example.test/ws/signal/?room=r1&resumable=1");
    expect(b.ws.url).toBe("ws://example.test/ws/signal/?room=r1&resumable=1");
    expect(a.client.getState().error).toBeNull();
    // A is back first (alone), then B: B is now the initiator and offers a new connection.
    a.ws.open();
    a.ws.receive({ type: "joined", room: "r1", peers: 1, initiator: false, resume: "ta9" });
    await settle();
    expect(a.status).toBe("connected"); // the old channel still works
    b.ws.open();
    b.ws.receive({ type: "joined", room: "r1", peers: 2, initiator: true, resume: "tb9" });
    a.ws.receive({ type: "peer-joined", room: "r1", peers: 2 });
    await settle();
    expect(b.pcs).toHaveLength(2);
    expect(b.status).toBe("connected");
    expect(b.client.sendRaw("over the old channel")).toBe(true);
    expect(oldB.channels[0]!.sent).toEqual(["over the old channel"]);
    await wire.pump();
    expect(a.pcs).toHaveLength(2);
    wire.link();
    await settle();
    // New channel in use at once (the chat layer hears of it, with no "closed"
    // in between); the old one lingers for the handover, then closes.
    expect(b.chat.events).toEqual([`opened:${PROTOCOL}:true`, `opened:${PROTOCOL}:true`]);
    expect(a.chat.events).toEqual([`opened:${PROTOCOL}:false`, `opened:${PROTOCOL}:false`]);
    expect(b.client.sendRaw("over the new channel")).toBe(true);
    expect(b.pc.channels[0]!.sent).toEqual(["over the new channel"]);
    // What is still on its way over the old channel reaches the chat layer.
    oldA.channels[0]!.fireMessage("late over the old channel");
    expect(a.chat.texts).toEqual(["late over the old channel"]);
    expect(oldA.closed).toBe(false);
    timers.advance(3000);
    expect(oldA.closed).toBe(true);
    expect(oldB.closed).toBe(true);
    expect(a.status).toBe("connected");
    expect(b.status).toBe("connected");
    expect(a.chat.events).toEqual([`opened:${PROTOCOL}:false`, `opened:${PROTOCOL}:false`]);
    expect(a.statuses).toEqual([
      "connecting",
      "waiting",
      "peer-connecting",
      "connected",
      "server-reconnecting",
      "connected",
    ]);
  });

  it("ICE fails while signaling is down: the lost restart offer is sent again once resumed", async () => {
    const wire = await connectedPair(timers);
    const { a, b } = wire;
    b.ws.serverClose(1006);
    await settle();
    b.pc.setConnectionState("failed");
    await settle();
    expect(b.pc.signalingState).toBe("have-local-offer"); // its offer went nowhere
    expect(b.status).toBe("server-reconnecting");
    timers.advance(100);
    expect(b.ws.url).toBe("ws://example.test/ws/signal/?room=r1&resume=tb1");
    b.ws.open();
    b.ws.receive({ type: "resumed", room: "r1", peers: 2, initiator: true, resume: "tb2" });
    await settle();
    expect(b.ws.sentOfType("offer")).toHaveLength(1);
    expect(b.ws.sentOfType("offer")[0]!.sdp).toContain("ice-restart");
    await wire.pump();
    expect(b.pc.signalingState).toBe("stable");
    expect(a.pc.iceGeneration).toBe(1);
    b.pc.setConnectionState("connected");
    await settle();
    expect(b.status).toBe("connected");
    expect(b.pcs).toHaveLength(1);
  });

  it("the partner leaves for good after its grace: only then 'Peer left'", async () => {
    const wire = await connectedPair(timers);
    const { b } = wire;
    b.ws.receive({ type: "peer-reconnecting", room: "r1" });
    await settle();
    expect(b.status).toBe("peer-reconnecting");
    b.ws.receive({ type: "leave" });
    b.ws.receive({ type: "peer-left", room: "r1", peers: 1 });
    await settle();
    expect(b.status).toBe("peer-left");
    expect(b.pc.closed).toBe(true);
    expect(b.statuses.slice(-3)).toEqual(["connected", "peer-reconnecting", "peer-left"]);
    expect(b.chat.events).toEqual([`opened:${PROTOCOL}:true`, "closed"]);
  });
});

describe("route", () => {
  it.each([
    [["host", "host"], "direct"],
    [["srflx", "prflx"], "direct"],
    [["relay", "host"], "relay"],
    [["host", "relay"], "relay"],
  ] as const)("selected pair %j is shown as %s", async (types, route) => {
    const a = new Side("A", timers);
    a.client.start();
    a.ws.open();
    a.ws.receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    a.pc.selectedTypes = [types[0], types[1]];
    a.pc.setConnectionState("connected");
    a.pc.channels[0]!.fireOpen();
    await settle();
    expect(a.client.getState().route).toBe(route);
    a.client.leave();
    expect(a.client.getState().route).toBeNull();
  });
});
