/**
 * One RTCPeerConnection and its `chat` DataChannel, negotiated with the WebRTC
 * spec's "perfect negotiation" pattern, and watched so that a network failure
 * is repaired with an ICE restart instead of ending the chat.
 *
 * The session knows nothing about the signaling socket or the room: what it
 * needs to send goes out through `PeerSessionEvents.signal`, what arrives is
 * handed in with `handleDescription` / `handleCandidate`, and what happens to
 * the link is reported through the other callbacks. `SignalingClient`
 * (signaling.ts) composes it with the socket and decides when a session is
 * replaced by a fresh one.
 *
 * Perfect negotiation (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example):
 * each side may offer at any time (the first DataChannel, a renegotiation, an
 * ICE restart). When offers cross, the impolite side (the server's
 * `initiator`) ignores the other's offer and the polite side rolls its own
 * back and answers. So neither side ever hangs in `have-local-offer`.
 *
 * Every description and candidate we send carries `pc: <this session's id>`
 * (an extra field the server relays untouched), so the other side can tell an
 * ICE restart of the connection it has from an offer for a brand-new one.
 */

import type { IceServer, Json, Timers } from "./signalingSocket";

export interface DataChannelLike {
  readonly label: string;
  /** Sub-protocol announced by the side that created the channel ("" if none). */
  readonly protocol?: string;
  readonly readyState: string;
  send(data: string): void;
  close(): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

export interface SessionDescription {
  type: "offer" | "answer" | "pranswer" | "rollback";
  sdp?: string;
}

export interface IceCandidateInit {
  candidate?: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  usernameFragment?: string | null;
}

/** The parts of an RTCStatsReport we read (a Map of stats objects by id). */
export interface StatsReportLike {
  forEach(fn: (value: Record<string, unknown>) => void): void;
  get(id: string): Record<string, unknown> | undefined;
}

export interface PeerConnectionLike {
  readonly connectionState: string;
  readonly signalingState: string;
  readonly localDescription: SessionDescription | null;
  createOffer(options?: { iceRestart?: boolean }): Promise<SessionDescription>;
  createAnswer(): Promise<SessionDescription>;
  setLocalDescription(desc: SessionDescription): Promise<void>;
  setRemoteDescription(desc: SessionDescription): Promise<void>;
  addIceCandidate(candidate: IceCandidateInit): Promise<void>;
  createDataChannel(label: string, options?: { ordered?: boolean; protocol?: string }): DataChannelLike;
  /** Ask for an ICE restart; fires negotiationneeded (absent in old browsers). */
  restartIce?(): void;
  getStats?(): Promise<StatsReportLike>;
  close(): void;
  onicecandidate:
    | ((ev: { candidate: (IceCandidateInit & { toJSON?: () => IceCandidateInit }) | null }) => void)
    | null;
  ondatachannel: ((ev: { channel: DataChannelLike }) => void) | null;
  onconnectionstatechange: ((ev: unknown) => void) | null;
  onnegotiationneeded?: ((ev: unknown) => void) | null;
}

export type PeerConnectionFactory = (config: { iceServers: IceServer[] }) => PeerConnectionLike;

/** Whether the chat runs over a direct path or through a TURN relay. */
export type Route = "direct" | "relay";

export const DATA_CHANNEL_LABEL = "chat";

export interface PeerSessionOptions {
  polite: boolean;
  /** Announced as the sub-protocol of the DataChannel we create ("" for none). */
  channelProtocol: string;
  iceServers: IceServer[];
  createPeerConnection: PeerConnectionFactory;
  timers: Timers;
  /** How long a connection may take to come up (or back) before onTimeout. */
  connectTimeoutMs: number;
  /** How long "disconnected" may last before we restart ICE (it often heals itself). */
  disconnectGraceMs: number;
  log: (...args: unknown[]) => void;
  /** Identifier sent as `pc` with our descriptions and candidates. */
  id: string;
}

export interface PeerSessionEvents {
  /** Send a signaling message to the other peer. */
  signal(msg: Json): void;
  /** The DataChannel opened (the chat can start or go on). */
  onOpen(session: PeerSession): void;
  /** The DataChannel closed: this session cannot carry the chat any more. */
  onClose(session: PeerSession): void;
  onText(session: PeerSession, text: string): void;
  /** The link went down (failed, or disconnected past the grace) or came back. */
  onLinkChange(session: PeerSession): void;
  /** The connection did not come up (or back) within connectTimeoutMs. */
  onTimeout(session: PeerSession): void;
  onRoute(session: PeerSession, route: Route | null): void;
}

/** A connection state that means ICE has lost (or not yet found) a path. */
function linkDown(state: string): boolean {
  return state === "failed" || state === "disconnected";
}

export class PeerSession {
  readonly id: string;
  /** The `pc` id the other side tags its messages with, once known. */
  remoteId: string | null = null;
  readonly pc: PeerConnectionLike;
  channel: DataChannelLike | null = null;
  /** True when this side created the DataChannel (createChannel), false when the peer did. */
  createdChannel = false;
  /** True once the DataChannel has been open (the pair has chatted). */
  everOpen = false;
  /** True while ICE is being restarted after the link went down. */
  restarting = false;
  route: Route | null = null;

  private readonly opts: PeerSessionOptions;
  private readonly events: PeerSessionEvents;
  private closed = false;
  private remoteSet = false;
  private pending: IceCandidateInit[] = [];
  private makingOffer = false;
  private ignoreOffer = false;
  private connectTimer: unknown = null;
  private graceTimer: unknown = null;

  constructor(opts: PeerSessionOptions, events: PeerSessionEvents, early: IceCandidateInit[] = []) {
    this.opts = opts;
    this.events = events;
    this.id = opts.id;
    this.pending = [...early];
    const pc = opts.createPeerConnection({ iceServers: opts.iceServers });
    this.pc = pc;
    pc.onicecandidate = (ev) => {
      if (this.closed || !ev.candidate) return;
      const c = typeof ev.candidate.toJSON === "function" ? ev.candidate.toJSON() : ev.candidate;
      if (!c.candidate) return; // end-of-candidates marker
      this.events.signal({
        type: "candidate",
        candidate: { candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null },
        pc: this.id,
      });
    };
    pc.ondatachannel = (ev) => {
      if (this.closed || ev.channel.label !== DATA_CHANNEL_LABEL) return;
      this.attachChannel(ev.channel);
    };
    pc.onconnectionstatechange = () => this.onConnectionState();
    pc.onnegotiationneeded = () => {
      void this.makeOffer();
    };
    this.armConnectTimer();
  }

  get polite(): boolean {
    return this.opts.polite;
  }

  /** The DataChannel is open: messages can be sent. */
  get open(): boolean {
    return !this.closed && this.channel?.readyState === "open";
  }

  /** The RTCPeerConnection can still be negotiated (not closed, by us or by anyone). */
  get usable(): boolean {
    return !this.closed && this.pc.signalingState !== "closed" && this.pc.connectionState !== "closed";
  }

  get hasRemoteDescription(): boolean {
    return this.remoteSet;
  }

  /** The offering side creates the DataChannel; negotiationneeded then sends the offer. */
  createChannel(): void {
    const protocol = this.opts.channelProtocol;
    const options = protocol ? { ordered: true, protocol } : { ordered: true };
    this.createdChannel = true;
    this.attachChannel(this.pc.createDataChannel(DATA_CHANNEL_LABEL, options));
  }

  send(text: string): boolean {
    const ch = this.channel;
    if (this.closed || !ch || ch.readyState !== "open") return false;
    try {
      ch.send(text);
      return true;
    } catch (err) {
      this.opts.log("send failed", err);
      return false;
    }
  }

  /** Restart ICE (from either side: perfect negotiation makes crossing restarts safe). */
  restartIce(): void {
    if (!this.usable) return;
    this.restarting = true;
    this.clearGrace();
    this.armConnectTimer();
    this.opts.log("restarting ICE", this.id);
    if (typeof this.pc.restartIce === "function") {
      this.pc.restartIce(); // fires negotiationneeded
    } else {
      void this.makeOffer(true);
    }
    this.events.onLinkChange(this);
  }

  /**
   * After our signaling socket came back (resumed): what we sent while it was
   * down was lost. Send our pending offer again, or restart ICE if the link
   * went down meanwhile.
   */
  resync(): void {
    if (!this.usable) return;
    const local = this.pc.localDescription;
    if (this.pc.signalingState === "have-local-offer" && local?.type === "offer") {
      this.events.signal({ type: "offer", sdp: local.sdp ?? "", pc: this.id });
    } else if (this.remoteSet && (!this.open || linkDown(this.pc.connectionState))) {
      this.restartIce();
    }
  }

  /** An offer or answer from the other side, for this session. */
  async handleDescription(desc: SessionDescription, fromId: string | null): Promise<void> {
    if (this.closed) return;
    if (fromId !== null) this.remoteId = fromId;
    const pc = this.pc;
    const offerCollision = desc.type === "offer" && (this.makingOffer || pc.signalingState !== "stable");
    this.ignoreOffer = !this.opts.polite && offerCollision;
    if (this.ignoreOffer) {
      this.opts.log("offer collision: impolite side ignores the other's offer");
      return;
    }
    if (desc.type === "answer" && pc.signalingState !== "have-local-offer") {
      this.opts.log("ignoring answer in state", pc.signalingState);
      return;
    }
    if (offerCollision && pc.signalingState === "have-local-offer") {
      // Polite side: take our own offer back, then answer theirs. (If our offer
      // is still being created, makeOffer drops it once it sees the remote offer.)
      this.opts.log("offer collision: polite side rolls back");
      await pc.setLocalDescription({ type: "rollback" });
      if (this.closed) return;
    }
    await pc.setRemoteDescription(desc);
    if (this.closed) return;
    this.remoteSet = true;
    await this.flushCandidates();
    if (this.closed) return;
    if (desc.type === "offer") {
      const answer = await pc.createAnswer();
      if (this.closed) return;
      await pc.setLocalDescription(answer);
      if (this.closed) return;
      const local = pc.localDescription ?? answer;
      this.events.signal({ type: "answer", sdp: local.sdp ?? "", pc: this.id });
    }
    this.checkRecovered();
  }

  async handleCandidate(c: IceCandidateInit): Promise<void> {
    if (this.closed) return;
    if (!this.remoteSet) {
      this.pending.push(c);
      return;
    }
    await this.addCandidate(c);
  }

  /** Read the selected candidate pair from getStats(): direct or relayed. */
  async refreshRoute(): Promise<void> {
    if (this.closed || typeof this.pc.getStats !== "function") return;
    let report: StatsReportLike;
    try {
      report = await this.pc.getStats();
    } catch (err) {
      this.opts.log("getStats failed", err);
      return;
    }
    if (this.closed) return;
    const route = selectedRoute(report);
    if (route !== this.route) {
      this.route = route;
      this.events.onRoute(this, route);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearConnectTimer();
    this.clearGrace();
    const ch = this.channel;
    if (ch) {
      ch.onopen = null;
      ch.onclose = null;
      ch.onmessage = null;
      try {
        ch.close();
      } catch {
        /* ignore */
      }
    }
    const pc = this.pc;
    pc.onicecandidate = null;
    pc.ondatachannel = null;
    pc.onconnectionstatechange = null;
    pc.onnegotiationneeded = null;
    try {
      pc.close();
    } catch {
      /* ignore */
    }
  }

  // -- internals --------------------------------------------------------------

  private async makeOffer(iceRestart = false): Promise<void> {
    if (this.closed || this.makingOffer) return;
    const pc = this.pc;
    try {
      this.makingOffer = true;
      const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : undefined);
      if (this.closed) return;
      // The other side's offer may have been applied meanwhile: then this one is stale.
      if (pc.signalingState !== "stable") return;
      await pc.setLocalDescription(offer);
      if (this.closed) return;
      const local = pc.localDescription ?? offer;
      this.events.signal({ type: "offer", sdp: local.sdp ?? "", pc: this.id });
    } catch (err) {
      this.opts.log("making an offer failed", err);
    } finally {
      this.makingOffer = false;
    }
  }

  private attachChannel(ch: DataChannelLike): void {
    this.channel = ch;
    let opened = false;
    ch.onopen = () => {
      // Chromium may hand over an already-open channel and still fire "open".
      if (this.closed || this.channel !== ch || opened) return;
      opened = true;
      this.everOpen = true;
      this.clearConnectTimer();
      this.events.onOpen(this);
      void this.refreshRoute();
    };
    ch.onclose = () => {
      if (this.closed || this.channel !== ch) return;
      this.clearConnectTimer();
      this.events.onClose(this);
    };
    ch.onmessage = (ev) => {
      if (this.closed || this.channel !== ch) return;
      if (typeof ev.data === "string" && ev.data) this.events.onText(this, ev.data);
    };
    if (ch.readyState === "open") ch.onopen(undefined);
  }

  private onConnectionState(): void {
    if (this.closed) return;
    const state = this.pc.connectionState;
    this.opts.log("connection state", state);
    if (state === "failed") {
      this.restartIce();
    } else if (state === "disconnected") {
      // Often a short blip (Wi-Fi roaming) that heals itself: give it a moment.
      if (this.graceTimer === null) {
        this.graceTimer = this.opts.timers.setTimeout(() => {
          this.graceTimer = null;
          if (!this.closed && linkDown(this.pc.connectionState)) this.restartIce();
        }, this.opts.disconnectGraceMs);
      }
    } else if (state === "connected") {
      this.clearGrace();
      this.checkRecovered();
    }
  }

  /** After an ICE restart: back to normal once the connection is up again. */
  private checkRecovered(): void {
    if (this.closed || this.pc.connectionState !== "connected") return;
    if (this.channel?.readyState === "open" || this.everOpen) this.clearConnectTimer();
    void this.refreshRoute();
    if (this.restarting && this.pc.signalingState === "stable") {
      this.restarting = false;
      this.events.onLinkChange(this);
    }
  }

  private armConnectTimer(): void {
    this.clearConnectTimer();
    this.connectTimer = this.opts.timers.setTimeout(() => {
      this.connectTimer = null;
      if (!this.closed) this.events.onTimeout(this);
    }, this.opts.connectTimeoutMs);
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) {
      this.opts.timers.clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
  }

  private clearGrace(): void {
    if (this.graceTimer !== null) {
      this.opts.timers.clearTimeout(this.graceTimer);
      this.graceTimer = null;
    }
  }

  private async flushCandidates(): Promise<void> {
    for (const c of this.pending.splice(0)) {
      if (this.closed) return;
      await this.addCandidate(c);
    }
  }

  private async addCandidate(c: IceCandidateInit): Promise<void> {
    try {
      await this.pc.addIceCandidate(c);
    } catch (err) {
      // A bad candidate (or one of an offer we ignored) must not end the session.
      if (!this.ignoreOffer) this.opts.log("addIceCandidate failed", err);
    }
  }
}

/**
 * The route of the selected candidate pair: "relay" when either end is a TURN
 * relay candidate, else "direct"; null before a pair is selected.
 */
export function selectedRoute(report: StatsReportLike): Route | null {
  let pair: Record<string, unknown> | undefined;
  report.forEach((s) => {
    if (pair) return;
    if (s.type === "transport" && typeof s.selectedCandidatePairId === "string") {
      pair = report.get(s.selectedCandidatePairId);
    }
  });
  if (!pair) {
    // Browsers without transport stats mark the pair itself.
    report.forEach((s) => {
      if (!pair && s.type === "candidate-pair" && (s.selected === true || (s.nominated === true && s.state === "succeeded")))
        pair = s;
    });
  }
  if (!pair) return null;
  const types = [pair.localCandidateId, pair.remoteCandidateId].map((id) =>
    typeof id === "string" ? report.get(id)?.candidateType : undefined,
  );
  if (types.every((t) => t === undefined)) return null;
  return types.includes("relay") ? "relay" : "direct";
}
