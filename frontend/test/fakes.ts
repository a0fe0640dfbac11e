import type {
  ChannelListener,
  DataChannelLike,
  IceCandidateInit,
  PeerConnectionLike,
  SessionDescription,
  SocketLike,
  StatsReportLike,
  Timers,
} from "../src/signaling";

/** Records what SignalingClient tells the chat layer above the DataChannel. */
export class FakeChat implements ChannelListener {
  /** "opened:<protocol>:<created>" and "closed", in order. */
  readonly events: string[] = [];
  /** Text frames handed over, in order. */
  readonly texts: string[] = [];
  constructor(readonly protocol = "") {}
  opened(protocol: string, created: boolean): void {
    this.events.push(`opened:${protocol}:${created}`);
  }
  received(text: string): void {
    this.texts.push(text);
  }
  closed(): void {
    this.events.push("closed");
  }
}

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
  /** If set, the next setRemoteDescription fails with it (a description the connection cannot take). */
  rejectNextRemote: Error | null = null;
  /** Offers made so far (each with its own sdp, so crossing offers can be told apart). */
  offers = 0;
  /** ICE credentials generation: bumped by an offer or answer that restarts ICE. */
  iceGeneration = 0;
  private restartPending = false;
  private negotiationPending = false;
  /** What getStats() reports as the selected pair's candidate types. */
  selectedTypes: [string, string] | null = null;
  onicecandidate:
    | ((ev: { candidate: (IceCandidateInit & { toJSON?: () => IceCandidateInit }) | null }) => void)
    | null = null;
  ondatachannel: ((ev: { channel: DataChannelLike }) => void) | null = null;
  onconnectionstatechange: ((ev: unknown) => void) | null = null;
  onnegotiationneeded: ((ev: unknown) => void) | null = null;

  constructor(readonly config: { iceServers: unknown[] }) {
    FakePeerConnection.created.push(this);
    this.remoteGate = FakePeerConnection.nextRemoteGate;
    FakePeerConnection.nextRemoteGate = null;
  }

  async createOffer(options?: { iceRestart?: boolean }): Promise<SessionDescription> {
    this.calls.push(options?.iceRestart || this.restartPending ? "createOffer:iceRestart" : "createOffer");
    this.offers += 1;
    const restart = options?.iceRestart || this.restartPending ? " ice-restart" : "";
    return { type: "offer", sdp: `v=0 offer${this.offers === 1 ? "" : this.offers}${restart}` };
  }
  async createAnswer(): Promise<SessionDescription> {
    this.calls.push("createAnswer");
    if (this.signalingState !== "have-remote-offer") throw new Error("no remote offer");
    // The answer to an ICE-restart offer carries new ICE credentials too.
    return { type: "answer", sdp: this.remoteDescription?.sdp?.includes("ice-restart") ? "v=0 answer ice-restart" : "v=0 answer" };
  }
  async setLocalDescription(desc: SessionDescription): Promise<void> {
    this.calls.push(`setLocalDescription:${desc.type}`);
    if (this.closed) throw new Error("InvalidStateError: closed");
    if (desc.type === "rollback") {
      if (this.signalingState !== "have-local-offer") throw new Error("InvalidStateError: nothing to roll back");
      this.localDescription = null;
      this.setSignaling("stable");
      return;
    }
    if (desc.type === "offer" && this.signalingState !== "stable") {
      throw new Error(`InvalidStateError: cannot set a local offer in ${this.signalingState}`);
    }
    if (desc.type === "offer" && desc.sdp?.includes("ice-restart")) this.restartPending = false;
    this.localDescription = desc;
    this.setSignaling(desc.type === "offer" ? "have-local-offer" : "stable");
  }
  async setRemoteDescription(desc: SessionDescription): Promise<void> {
    this.calls.push(`setRemoteDescription:${desc.type}`);
    if (this.remoteGate) await this.remoteGate;
    if (this.closed) throw new Error("InvalidStateError: closed");
    const reject = this.rejectNextRemote;
    this.rejectNextRemote = null;
    if (reject) throw reject;
    // No implicit rollback: the client must roll back its own offer first.
    if (desc.type === "offer" && this.signalingState !== "stable") {
      throw new Error(`InvalidStateError: remote offer in ${this.signalingState}`);
    }
    if (desc.type === "answer" && this.signalingState !== "have-local-offer") {
      throw new Error(`InvalidStateError: remote answer in ${this.signalingState}`);
    }
    if (desc.sdp?.includes("ice-restart")) this.iceGeneration += 1;
    this.remoteDescription = desc;
    this.setSignaling(desc.type === "offer" ? "have-remote-offer" : "stable");
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
    this.needNegotiation();
    return ch;
  }
  restartIce(): void {
    this.calls.push("restartIce");
    this.restartPending = true;
    this.needNegotiation();
  }
  async getStats(): Promise<StatsReportLike> {
    const entries: [string, Record<string, unknown>][] = [];
    if (this.selectedTypes) {
      entries.push(["T", { type: "transport", selectedCandidatePairId: "P" }]);
      entries.push(["P", { type: "candidate-pair", localCandidateId: "L", remoteCandidateId: "R" }]);
      entries.push(["L", { type: "local-candidate", candidateType: this.selectedTypes[0] }]);
      entries.push(["R", { type: "remote-candidate", candidateType: this.selectedTypes[1] }]);
    }
    return new Map(entries);
  }
  close(): void {
    this.closed = true;
    this.connectionState = "closed";
    this.signalingState = "closed";
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
  /** ICE reports a new connection state (failed, disconnected, connected...). */
  setConnectionState(state: string): void {
    this.connectionState = state;
    this.onconnectionstatechange?.({});
  }
  /** Like browsers: negotiationneeded fires asynchronously, and only in "stable". */
  private needNegotiation(): void {
    this.negotiationPending = true;
    queueMicrotask(() => this.fireNegotiationIfStable());
  }
  private fireNegotiationIfStable(): void {
    if (!this.negotiationPending || this.closed || this.signalingState !== "stable") return;
    this.negotiationPending = false;
    this.onnegotiationneeded?.({});
  }
  private setSignaling(state: string): void {
    this.signalingState = state;
    if (state === "stable" && this.restartPending) this.negotiationPending = true;
    if (state === "stable" && this.negotiationPending) queueMicrotask(() => this.fireNegotiationIfStable());
  }
}

export class FakeTimers implements Timers {
  private nextId = 1;
  /** Virtual time: advance() moves it and runs the timers that fall due. */
  now = 0;
  pending = new Map<number, { fn: () => void; ms: number; due: number }>();
  delays: number[] = [];
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.set(id, { fn, ms, due: this.now + ms });
    this.delays.push(ms);
    return id;
  }
  /** Move virtual time forward by ms, running due timers in order (also ones they set). */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      let next: [number, { fn: () => void; due: number }] | null = null;
      for (const e of this.pending) if (e[1].due <= end && (!next || e[1].due < next[1].due)) next = e;
      if (!next) break;
      this.pending.delete(next[0]);
      this.now = next[1].due;
      next[1].fn();
    }
    this.now = end;
  }
  /** The delays of the timers pending now. */
  pendingDelays(): number[] {
    return [...this.pending.values()].map((t) => t.ms);
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
