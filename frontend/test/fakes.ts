import type {
  DataChannelLike,
  IceCandidateInit,
  PeerConnectionLike,
  SessionDescription,
  SocketLike,
  Timers,
} from "../src/signaling";

export class FakeSocket implements SocketLike {
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  closedWith: { code?: number; reason?: string } | null = null;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason?: string; wasClean?: boolean }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(readonly url: string) {}

  send(data: string): void {
    if (this.readyState !== 1) throw new Error("socket not open");
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    if (this.readyState === 3) return;
    this.readyState = 3;
    // Browsers deliver the close event asynchronously.
    queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason, wasClean: true }));
  }

  // -- test helpers: what the server does
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(msg: unknown): void {
    this.onmessage?.({ data: typeof msg === "string" ? msg : JSON.stringify(msg) });
  }

  serverClose(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code, wasClean: code !== 1006 });
  }

  sentOfType(type: string): Record<string, unknown>[] {
    return this.sent.filter((m) => m.type === type);
  }
}

export class FakeChannel implements DataChannelLike {
  readyState = "connecting";
  protocol = "";
  sent: string[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  constructor(readonly label: string) {}
  send(data: string): void {
    if (this.readyState !== "open") throw new Error("channel not open");
    this.sent.push(data);
  }
  close(): void {
    this.readyState = "closed";
  }
  // helpers
  fireOpen(): void {
    this.readyState = "open";
    this.onopen?.({});
  }
  fireClose(): void {
    this.readyState = "closed";
    this.onclose?.({});
  }
  fireMessage(text: string): void {
    this.onmessage?.({ data: text });
  }
}

export class FakePeerConnection implements PeerConnectionLike {
  static created: FakePeerConnection[] = [];
  /** Gate handed to the next created connection's setRemoteDescription. */
  static nextRemoteGate: Promise<void> | null = null;
  connectionState = "new";
  signalingState = "stable";
  localDescription: SessionDescription | null = null;
  remoteDescription: SessionDescription | null = null;
  closed = false;
  channels: FakeChannel[] = [];
  /** Every call in order, e.g. "setRemoteDescription:offer", "addIceCandidate:c1". */
  calls: string[] = [];
  added: IceCandidateInit[] = [];
  /** If set, setRemoteDescription waits for this promise (to test queueing). */
  remoteGate: Promise<void> | null = null;
  onicecandidate:
    | ((ev: { candidate: (IceCandidateInit & { toJSON?: () => IceCandidateInit }) | null }) => void)
    | null = null;
  ondatachannel: ((ev: { channel: DataChannelLike }) => void) | null = null;
  onconnectionstatechange: ((ev: unknown) => void) | null = null;

  constructor(readonly config: { iceServers: unknown[] }) {
    FakePeerConnection.created.push(this);
    this.remoteGate = FakePeerConnection.nextRemoteGate;
    FakePeerConnection.nextRemoteGate = null;
  }

  async createOffer(): Promise<SessionDescription> {
    this.calls.push("createOffer");
    return { type: "offer", sdp: "v=0 offer" };
  }
  async createAnswer(): Promise<SessionDescription> {
    this.calls.push("createAnswer");
    if (this.signalingState !== "have-remote-offer") throw new Error("no remote offer");
    return { type: "answer", sdp: "v=0 answer" };
  }
  async setLocalDescription(desc: SessionDescription): Promise<void> {
    this.calls.push(`setLocalDescription:${desc.type}`);
    this.localDescription = desc;
    this.signalingState = desc.type === "offer" ? "have-local-offer" : "stable";
  }
  async setRemoteDescription(desc: SessionDescription): Promise<void> {
    this.calls.push(`setRemoteDescription:${desc.type}`);
    if (this.remoteGate) await this.remoteGate;
    this.remoteDescription = desc;
    this.signalingState = desc.type === "offer" ? "have-remote-offer" : "stable";
  }
  async addIceCandidate(c: IceCandidateInit): Promise<void> {
    if (!this.remoteDescription) throw new Error("InvalidStateError: no remote description");
    this.calls.push(`addIceCandidate:${c.candidate}`);
    this.added.push(c);
  }
  createDataChannel(label: string, options?: { protocol?: string }): FakeChannel {
    this.calls.push(`createDataChannel:${label}`);
    const ch = new FakeChannel(label);
    ch.protocol = options?.protocol ?? "";
    this.channels.push(ch);
    return ch;
  }
  close(): void {
    this.closed = true;
    this.connectionState = "closed";
  }
  // helpers
  emitCandidate(candidate: string | null): void {
    this.onicecandidate?.({
      candidate: candidate === null ? null : { candidate, sdpMid: "0", sdpMLineIndex: 0 },
    });
  }
  remoteOpensChannel(label = "chat", protocol = ""): FakeChannel {
    const ch = new FakeChannel(label);
    ch.protocol = protocol;
    this.channels.push(ch);
    this.ondatachannel?.({ channel: ch });
    return ch;
  }
}

export class FakeTimers implements Timers {
  private nextId = 1;
  pending = new Map<number, { fn: () => void; ms: number }>();
  delays: number[] = [];
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.set(id, { fn, ms });
    this.delays.push(ms);
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  /** Run every pending timer (one round). */
  runAll(): void {
    const due = [...this.pending.entries()];
    this.pending.clear();
    for (const [, t] of due) t.fn();
  }
}

/** Let queued promise chains (the client's signaling queue) settle. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
}
