import { beforeEach, describe, expect, it } from "vitest";
import { CHAT_PROTOCOL, ChatModel, parseEnvelope, type ChatOptions } from "../src/chat";
import { SignalingClient } from "../src/signaling";
import { FakePeerConnection, FakeSocket, FakeTimers, settle } from "./fakes";

interface Harness {
  chat: ChatModel;
  wire: string[];
  timers: FakeTimers;
  clock: { t: number };
  /** Whether the fake channel accepts frames. */
  link: { up: boolean };
}

function setup(extra: Partial<ChatOptions> = {}): Harness {
  const wire: string[] = [];
  const timers = new FakeTimers();
  const clock = { t: 1_000 };
  const link = { up: true };
  let n = 0;
  const chat = new ChatModel({
    send: (raw) => {
      if (!link.up) return false;
      wire.push(raw);
      return true;
    },
    now: () => clock.t,
    timers,
    newId: () => `id${++n}`,
    ackTimeoutMs: 5_000,
    typingTimeoutMs: 4_000,
    typingIntervalMs: 2_000,
    ...extra,
  });
  return { chat, wire, timers, clock, link };
}

const env = (o: Record<string, unknown>) => JSON.stringify({ mcp: "chat", ...o });
const sentEnvelopes = (h: Harness) => h.wire.map((w) => JSON.parse(w) as Record<string, unknown>);
const mine = (h: Harness) => h.chat.getState().entries.filter((e) => e.from === "me");
const peers = (h: Harness) => h.chat.getState().entries.filter((e) => e.from === "peer").map((e) => e.text);

describe("plain-text peers (older clients, bots)", () => {
  it("sends and shows bare text, and never sends envelopes, acks or typing", () => {
    const h = setup();
    h.chat.channelOpened("", true); // we created it; the peer has not said hello
    h.chat.draftChanged("hel");
    expect(h.chat.send("  hello  ")).toBe(true);
    h.chat.receive("hi back");
    h.chat.receive('{"not":"ours"}');
    expect(h.wire).toEqual(["hello"]);
    expect(mine(h).map((e) => [e.text, e.delivery])).toEqual([["hello", "sent"]]);
    expect(peers(h)).toEqual(["hi back", '{"not":"ours"}']);
    // Nothing to wait for: closing does not mark plain messages failed.
    h.chat.channelClosed();
    expect(mine(h)[0]!.delivery).toBe("sent");
  });

  it("does not say hello on a channel created without our sub-protocol", () => {
    const h = setup();
    h.chat.channelOpened("", false);
    expect(h.wire).toEqual([]);
    expect(h.chat.getState().peerUpgraded).toBe(false);
  });

  it("rejects empty and over-long messages", () => {
    const h = setup({ maxLength: 5 });
    h.chat.channelOpened("", true);
    expect(h.chat.send("   ")).toBe(false);
    expect(h.chat.send("123456")).toBe(false);
    expect(h.wire).toEqual([]);
  });
});

describe("envelope peers", () => {
  it("the accepting side says hello when the creator announced the protocol, then uses envelopes", () => {
    const h = setup();
    h.chat.channelOpened(CHAT_PROTOCOL, false);
    expect(sentEnvelopes(h)).toEqual([{ mcp: "chat", type: "hello", v: 1 }]);
    h.chat.send("hi");
    expect(sentEnvelopes(h)[1]).toEqual({ mcp: "chat", type: "msg", id: "id1", text: "hi", at: 1_000 });
  });

  it("the creator switches to envelopes on hello; an ack marks delivered", () => {
    const h = setup();
    h.chat.channelOpened(CHAT_PROTOCOL, true);
    expect(h.wire).toEqual([]);
    h.chat.receive(env({ type: "hello", v: 1 }));
    expect(h.chat.getState().peerUpgraded).toBe(true);
    h.chat.send("hi");
    expect(mine(h)[0]!.delivery).toBe("sent");
    h.chat.receive(env({ type: "ack", id: "id1" }));
    expect(mine(h)[0]!.delivery).toBe("delivered");
    expect(h.timers.pending.size).toBe(0);
  });

  it("acks every message, shows a resent one once", () => {
    const h = setup();
    h.chat.channelOpened(CHAT_PROTOCOL, false);
    h.wire.length = 0;
    h.chat.receive(env({ type: "msg", id: "x1", text: "one", at: 5 }));
    h.chat.receive(env({ type: "msg", id: "x1", text: "one", at: 5 }));
    expect(peers(h)).toEqual(["one"]);
    expect(sentEnvelopes(h)).toEqual([
      { mcp: "chat", type: "ack", id: "x1" },
      { mcp: "chat", type: "ack", id: "x1" },
    ]);
  });

  it("a message not acknowledged in time fails; retry resends the same id; a late ack still counts", () => {
    const h = setup();
    h.chat.channelOpened(CHAT_PROTOCOL, false);
    h.chat.send("are you there?");
    expect(h.timers.delays).toContain(5_000);
    h.timers.runAll();
    expect(mine(h)[0]!.delivery).toBe("failed");
    expect(h.chat.retry("id1")).toBe(true);
    expect(mine(h)[0]!.delivery).toBe("sent");
    const msgs = sentEnvelopes(h).filter((e) => e.type === "msg");
    expect(msgs.map((m) => m.id)).toEqual(["id1", "id1"]);
    h.timers.runAll();
    expect(mine(h)[0]!.delivery).toBe("failed");
    h.chat.receive(env({ type: "ack", id: "id1" }));
    expect(mine(h)[0]!.delivery).toBe("delivered");
    expect(h.chat.retry("id1")).toBe(false); // only failed messages are retried
  });

  it("the channel closing fails what is unacknowledged; retry waits for a channel", () => {
    const h = setup();
    h.chat.channelOpened(CHAT_PROTOCOL, false);
    h.chat.send("first");
    h.chat.receive(env({ type: "ack", id: "id1" }));
    h.chat.send("second");
    h.link.up = false;
    h.chat.channelClosed();
    expect(mine(h).map((e) => e.delivery)).toEqual(["delivered", "failed"]);
    expect(h.timers.pending.size).toBe(0);
    expect(h.chat.retry("id2")).toBe(false);
    expect(h.chat.send("while down")).toBe(true); // shown, and failed at once
    expect(mine(h)[2]!.delivery).toBe("failed");
    h.link.up = true;
    h.chat.channelOpened(CHAT_PROTOCOL, false);
    expect(h.chat.retry("id2")).toBe(true);
    h.chat.receive(env({ type: "ack", id: "id2" }));
    expect(mine(h).map((e) => e.delivery)).toEqual(["delivered", "delivered", "failed"]);
  });

  it("keeps a hello that arrives before this side's open; a new channel starts plain", () => {
    const h = setup();
    h.chat.receive(env({ type: "hello", v: 1 }));
    h.chat.channelOpened(CHAT_PROTOCOL, true);
    expect(h.chat.getState().peerUpgraded).toBe(true);
    h.chat.channelClosed();
    h.chat.channelOpened(CHAT_PROTOCOL, true); // perhaps an older client this time
    expect(h.chat.getState().peerUpgraded).toBe(false);
    h.chat.send("plain");
    expect(h.wire).toEqual(["plain"]);
  });

  it("ignores acks for unknown ids", () => {
    const h = setup();
    h.chat.channelOpened(CHAT_PROTOCOL, false);
    const before = h.chat.getState();
    h.chat.receive(env({ type: "ack", id: "nope" }));
    expect(h.chat.getState().entries).toEqual(before.entries);
  });
});

describe("typing", () => {
  it("is sent throttled to upgraded peers, and stopped when the draft empties", () => {
    const h = setup();
    h.chat.channelOpened(CHAT_PROTOCOL, false);
    h.wire.length = 0;
    h.chat.draftChanged("h");
    h.clock.t += 500;
    h.chat.draftChanged("he");
    h.clock.t += 2_000;
    h.chat.draftChanged("hel");
    h.chat.draftChanged("");
    h.chat.draftChanged("");
    expect(sentEnvelopes(h)).toEqual([
      { mcp: "chat", type: "typing", on: true },
      { mcp: "chat", type: "typing", on: true },
      { mcp: "chat", type: "typing", on: false },
    ]);
  });

  it("shows the peer typing until it stops, sends a message, or the signal expires", () => {
    const h = setup();
    h.chat.channelOpened(CHAT_PROTOCOL, false);
    h.chat.receive(env({ type: "typing", on: true }));
    expect(h.chat.getState().peerTyping).toBe(true);
    h.chat.receive(env({ type: "typing", on: false }));
    expect(h.chat.getState().peerTyping).toBe(false);
    h.chat.receive(env({ type: "typing", on: true }));
    h.chat.receive(env({ type: "msg", id: "m", text: "done" }));
    expect(h.chat.getState().peerTyping).toBe(false);
    h.chat.receive(env({ type: "typing", on: true }));
    expect(h.timers.delays).toContain(4_000);
    h.timers.runAll(); // the "stopped" signal was lost: it expires
    expect(h.chat.getState().peerTyping).toBe(false);
    h.chat.receive(env({ type: "typing", on: true }));
    h.chat.channelClosed();
    expect(h.chat.getState().peerTyping).toBe(false);
  });
});

describe("hostile frames", () => {
  it("shows malformed envelopes as the text they are, never hiding or running anything", () => {
    const frames = [
      '{"mcp":"chat","type":"msg","id":5,"text":"x"}',
      '{"mcp":"chat","type":"msg","id":"' + "a".repeat(65) + '","text":"x"}',
      '{"mcp":"chat","type":"msg","id":"ok"}',
      '{"mcp":"chat","type":"nope"}',
      '{"mcp":"chat",',
      "<img src=x onerror=alert(1)>",
      '["mcp","chat"]',
    ];
    for (const f of frames) expect(parseEnvelope(f)).toBeNull();
    const h = setup();
    h.chat.channelOpened(CHAT_PROTOCOL, false);
    for (const f of frames) h.chat.receive(f);
    expect(peers(h)).toEqual(frames);
    h.chat.receive("");
    expect(peers(h)).toHaveLength(frames.length);
  });
});

describe("with SignalingClient", () => {
  beforeEach(() => {
    FakePeerConnection.created = [];
  });

  function client(chat: { current: ChatModel | null }) {
    const sockets: FakeSocket[] = [];
    const c: SignalingClient = new SignalingClient({
      url: "ws://example.test/ws/signal/?room=r1",
      room: "r1",
      createSocket: (url) => {
        const s = new FakeSocket(url);
        sockets.push(s);
        return s;
      },
      createPeerConnection: (config) => new FakePeerConnection(config),
      timers: new FakeTimers(),
      channel: {
        protocol: CHAT_PROTOCOL,
        opened: (p, created) => chat.current?.channelOpened(p, created),
        received: (t) => chat.current?.receive(t),
        closed: () => chat.current?.channelClosed(),
      },
    });
    chat.current = new ChatModel({ send: (raw) => c.sendRaw(raw), timers: new FakeTimers() });
    return { c, ws: () => sockets[sockets.length - 1]!, pc: () => FakePeerConnection.created.at(-1)! };
  }

  it("the initiator announces the protocol; raw frames go to the chat layer", async () => {
    const ref: { current: ChatModel | null } = { current: null };
    const { c, ws, pc } = client(ref);
    c.start();
    ws().open();
    ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    const ch = pc().channels[0]!;
    expect(ch.protocol).toBe(CHAT_PROTOCOL);
    ch.fireOpen();
    ch.fireMessage(env({ type: "hello", v: 1 }));
    expect(ref.current!.getState().peerUpgraded).toBe(true);
    ref.current!.send("hi");
    expect(JSON.parse(ch.sent[0]!)).toMatchObject({ type: "msg", text: "hi" });
    ch.fireMessage(env({ type: "msg", id: "p1", text: "yo" }));
    expect(ref.current!.getState().entries.filter((e) => e.from === "peer").map((e) => e.text)).toEqual(["yo"]);
    // The peer goes: the unacknowledged message fails.
    ws().receive({ type: "peer-left", room: "r1", peers: 1 });
    await settle();
    expect(ref.current!.getState().entries.find((e) => e.from === "me")!.delivery).toBe("failed");
    expect(c.sendRaw("x")).toBe(false);
  });

  it("an ICE restart keeps the chat: nothing fails, the same channel carries the ack", async () => {
    const ref: { current: ChatModel | null } = { current: null };
    const { c, ws, pc } = client(ref);
    c.start();
    ws().open();
    ws().receive({ type: "joined", room: "r1", peers: 2, initiator: true });
    await settle();
    ws().receive({ type: "answer", sdp: "v=0 answer" });
    await settle();
    const ch = pc().channels[0]!;
    ch.fireOpen();
    ch.fireMessage(env({ type: "hello", v: 1 }));
    pc().setConnectionState("failed");
    await settle();
    expect(c.getState().status).toBe("ice-restarting");
    expect(ref.current!.send("during the repair")).toBe(true);
    const id = (JSON.parse(ch.sent.at(-1)!) as { id: string }).id;
    pc().setConnectionState("connected");
    await settle();
    ch.fireMessage(env({ type: "ack", id }));
    expect(ref.current!.getState().entries.find((e) => e.from === "me")!.delivery).toBe("delivered");
    expect(ref.current!.getState().peerUpgraded).toBe(true);
  });

  it("the answerer says hello on a channel that announced the protocol", async () => {
    const ref: { current: ChatModel | null } = { current: null };
    const { c, ws, pc } = client(ref);
    c.start();
    ws().open();
    ws().receive({ type: "joined", room: "r1", peers: 1, initiator: false });
    ws().receive({ type: "offer", sdp: "v=0 offer" });
    await settle();
    const ch = pc().remoteOpensChannel("chat", CHAT_PROTOCOL);
    ch.fireOpen();
    expect(ch.sent.map((s) => JSON.parse(s) as unknown)).toEqual([{ mcp: "chat", type: "hello", v: 1 }]);
    ch.fireClose();
    expect(ref.current!.getState().peerTyping).toBe(false);
  });
});
