/**
 * The browser client's connection state machine for mcp-tornado: the facade
 * the React views use (`SignalingClient`, `ClientState`, `STATUS_TEXT`).
 *
 * It composes two parts and decides between them:
 * - `SignalingSocket` (signalingSocket.ts): the WebSocket, reconnect with
 *   jittered backoff, opt-in resume of the server-side session;
 * - `PeerSession` (peerSession.ts): one RTCPeerConnection + `chat`
 *   DataChannel with perfect negotiation, ICE restart, connect timeout, stats.
 *
 * The rules (frontend/README.md, "Connection state machine", has the whole
 * picture): only the server's `leave` / `peer-left` means the peer left; a
 * failed or dropped peer-to-peer link is repaired (ICE restart, else a fresh
 * connection) while the server says the peer is still there; a lost signaling
 * socket does not touch a working DataChannel.
 *
 * The chat itself (chat.ts) sits above the DataChannel: the facade tells it,
 * through `ClientOptions.channel` (a `ChannelListener`), when a chat channel
 * is open (again: after a repair or a make-before-break handover the channel
 * may be a new one) and when there is none, hands it every text frame, and
 * sends its raw text with `sendRaw`.
 *
 * Everything that touches the outside world (WebSocket, RTCPeerConnection,
 * timers) is injected, so the whole flow is unit tested with fakes.
 *
 * Wire protocol: the "Protocol" section of the top-level README.md.
 */

import { parseIceServers } from "./config";
import {
  PeerSession,
  type IceCandidateInit,
  type PeerConnectionFactory,
  type Route,
  type SessionDescription,
} from "./peerSession";
import {
  DEFAULT_BACKOFF,
  SignalingSocket,
  backoffDelay,
  type BackoffOptions,
  type IceServer,
  type Json,
  type Refusal,
  type SocketFactory,
  type Timers,
} from "./signalingSocket";

export {
  selectedRoute,
  type DataChannelLike,
  type IceCandidateInit,
  type PeerConnectionFactory,
  type PeerConnectionLike,
  type Route,
  type SessionDescription,
  type StatsReportLike,
} from "./peerSession";
export {
  CLOSE_INVALID_RESUME,
  CLOSE_ROOM_FULL,
  CLOSE_TRY_AGAIN_LATER,
  FATAL_CLOSE_CODES,
  type BackoffOptions,
  type IceServer,
  type SocketFactory,
  type SocketLike,
  type Timers,
} from "./signalingSocket";

export type Status =
  | "idle"
  | "connecting" // opening the signaling socket
  | "waiting" // in the room, alone
  | "peer-connecting" // a peer is there, WebRTC negotiation in progress
  | "connected" // DataChannel open
  | "ice-restarting" // the peer-to-peer link dropped while the peer is still in the room: repairing it
  | "peer-reconnecting" // the server says the peer's signaling socket is away (it may resume)
  | "server-reconnecting" // our socket dropped but the DataChannel is open: chat on, reconnecting
  | "peer-left" // the other peer went away; waiting for a new one
  | "reconnecting" // socket dropped, no chat open, retrying with backoff
  | "room-full" // server refused: room has two peers already
  | "refused" // server refused for good: bad room name, bad/expired token, rate limit
  | "disconnected"; // user left (or gave up)

export const STATUS_TEXT: Record<Status, string> = {
  idle: "Not connected",
  connecting: "Connecting…",
  waiting: "Waiting for a peer",
  "peer-connecting": "Connecting to peer…",
  connected: "Connected",
  "ice-restarting": "Reconnecting to peer…",
  "peer-reconnecting": "Peer reconnecting…",
  "server-reconnecting": "Connected — server connection lost, reconnecting…",
  "peer-left": "Peer left — waiting for a new peer",
  reconnecting: "Connection lost — reconnecting…",
  "room-full": "Room is full",
  refused: "Refused by the server",
  disconnected: "Disconnected",
};

export interface ClientState {
  status: Status;
  room: string;
  /** Last error from the server or from WebRTC, shown to the user. */
  error: string | null;
  /** True when the chat DataChannel is open and messages can be sent. */
  canSend: boolean;
  /** Reconnect attempt number while the signaling socket is down (1-based). */
  attempt: number;
  /** How the open chat runs (from getStats()): "direct", "relay", or null (unknown / not connected). */
  route: Route | null;
}

export interface ClientOptions {
  /** Full WebSocket URL, including ?room=. Use signalUrl() to build it. */
  url: string;
  room: string;
  createSocket: SocketFactory;
  createPeerConnection: PeerConnectionFactory;
  /** The client's own ICE servers: used when the server sends none. */
  iceServers?: IceServer[];
  backoff?: Partial<BackoffOptions>;
  /** Backoff between attempts to bring up a peer connection that timed out. */
  peerBackoff?: Partial<BackoffOptions>;
  /** A peer connection that is not up within this time is retried (default 15 s). */
  connectTimeoutMs?: number;
  /** How long "disconnected" may last before an ICE restart (default 4 s). */
  disconnectGraceMs?: number;
  /** How long an old DataChannel stays open after its replacement opened (default 3 s). */
  handoverMs?: number;
  timers?: Timers;
  random?: () => number;
  /** Called for diagnostics; defaults to no-op. */
  log?: (...args: unknown[]) => void;
  /** The chat layer above the DataChannel (chat.ts); see ChannelListener. */
  channel: ChannelListener;
}

/**
 * Hands the chat DataChannel's raw text to the chat layer (chat.ts), which
 * sends its own raw text with SignalingClient.sendRaw.
 *
 * "The chat channel" is whichever DataChannel carries the chat now. An ICE
 * restart keeps it (nothing is called); when a new connection replaces the
 * old one (make before break), `opened` is called again for the new channel
 * without `closed` in between; `closed` means no channel is open any more.
 */
export interface ChannelListener {
  /** Announced as the DataChannel's sub-protocol when we create the channel. */
  protocol: string;
  /** A chat channel opened; `protocol` as its creator announced it, `created` if we did. */
  opened(protocol: string, created: boolean): void;
  /** A text frame from the peer, untouched. */
  received(text: string): void;
  /** No chat channel is open any more (closed, or dropped with its peer connection). */
  closed(): void;
}

const DEFAULT_PEER_BACKOFF: BackoffOptions = { initialMs: 1_000, maxMs: 30_000, factor: 2, jitter: 0.2 };

/** What the server last told us about the other seat of the room. */
type Partner = "none" | "present" | "away" | "left";

export const NO_TURN_ADVICE =
  "Could not connect to your peer. If you are both behind strict NATs or firewalls, a TURN relay " +
  "server is needed and none is configured: ask the server's operator to set one up. Still trying…";
export const TURN_FAILED_ADVICE =
  "Could not connect to your peer, not even through the relay server. Check your network. Still trying…";

function hasTurn(servers: readonly IceServer[]): boolean {
  return servers.some((s) =>
    (Array.isArray(s.urls) ? s.urls : [s.urls]).some((u) => u.startsWith("turn:") || u.startsWith("turns:")),
  );
}

function randomId(random: () => number): string {
  const c = globalThis.crypto as { randomUUID?: () => string } | undefined;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.floor(random() * 1e12).toString(36)}`;
}

/** Build the signaling URL from the page's own location (never hard-coded). */
export function signalUrl(
  location: { protocol: string; host: string },
  room: string,
  token?: string | null,
): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let url = `${scheme}//${location.host}/ws/signal/?room=${encodeURIComponent(room)}`;
  if (token) url += `&token=${encodeURIComponent(token)}`;
  return url;
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Pull a session description out of the message, accepting both
 * {"type":"offer","sdp":"..."} and {"type":"offer","offer":{type,sdp}}
 * (and the same for answers, plus a generic "description"/"sdp" object).
 */
export function extractDescription(msg: Json, kind: "offer" | "answer"): SessionDescription | null {
  const candidates: unknown[] = [msg[kind], msg.description, msg.sdp];
  for (const c of candidates) {
    if (typeof c === "string" && c.length > 0) return { type: kind, sdp: c };
    if (isObject(c) && typeof c.sdp === "string") return { type: kind, sdp: c.sdp };
  }
  return null;
}

/**
 * Pull an ICE candidate out of the message. Accepts
 * {"type":"candidate","candidate":{candidate,sdpMid,sdpMLineIndex}} and the
 * flat legacy {"type":"candidate","candidate":"candidate:...","sdpMid":...}.
 * Returns null for an end-of-candidates marker we can ignore.
 */
export function extractCandidate(msg: Json): IceCandidateInit | null {
  const c = msg.candidate ?? msg.ice;
  if (isObject(c)) {
    if (typeof c.candidate !== "string") return null;
    return {
      candidate: c.candidate,
      sdpMid: typeof c.sdpMid === "string" ? c.sdpMid : null,
      sdpMLineIndex: typeof c.sdpMLineIndex === "number" ? c.sdpMLineIndex : null,
      ...(typeof c.usernameFragment === "string" ? { usernameFragment: c.usernameFragment } : {}),
    };
  }
  if (typeof c === "string") {
    return {
      candidate: c,
      sdpMid: typeof msg.sdpMid === "string" ? msg.sdpMid : null,
      sdpMLineIndex: typeof msg.sdpMLineIndex === "number" ? msg.sdpMLineIndex : null,
    };
  }
  return null;
}

type Listener = (state: ClientState) => void;

export class SignalingClient {
  private readonly opts: ClientOptions;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly log: (...args: unknown[]) => void;
  private readonly peerBackoff: BackoffOptions;
  private readonly socket: SignalingSocket;

  private state: ClientState;
  private listeners = new Set<Listener>();

  /** The peer connection being negotiated or in use. */
  private session: PeerSession | null = null;
  /**
   * An older session whose DataChannel is still open while `session` is being
   * negotiated (after a fresh join): the chat goes on over it until the new one
   * opens, then it is closed (make before break).
   */
  private previous: PeerSession | null = null;
  private handoverTimer: unknown = null;
  /** Candidates that arrived before any peer connection existed. */
  private earlyCandidates: IceCandidateInit[] = [];
  /** Our role from the last joined/resumed: the initiator is the impolite side. */
  private polite = true;
  private partner: Partner = "none";
  /** ICE servers from the server's joined/resumed, else the client's own. */
  private iceServers: IceServer[];
  private joinedOnce = false;
  private signalingDown = false;
  /** The current session's DataChannel closed while the partner is still in the room. */
  private linkLost = false;
  /** The session whose DataChannel the chat layer was last told is open. */
  private listenedSession: PeerSession | null = null;
  private peerAttempts = 0;
  private peerRetryTimer: unknown = null;
  private stopped = false;
  private refusal: Refusal | null = null;
  /** Incoming signaling messages are handled strictly one after another. */
  private chain: Promise<void> = Promise.resolve();

  constructor(opts: ClientOptions) {
    this.opts = opts;
    this.timers = opts.timers ?? {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
    };
    this.random = opts.random ?? Math.random;
    this.log = opts.log ?? (() => undefined);
    this.peerBackoff = { ...DEFAULT_PEER_BACKOFF, ...opts.peerBackoff };
    this.iceServers = opts.iceServers ?? [];
    this.socket = new SignalingSocket(
      {
        url: opts.url,
        createSocket: opts.createSocket,
        timers: this.timers,
        random: this.random,
        backoff: { ...DEFAULT_BACKOFF, ...opts.backoff },
        log: this.log,
      },
      {
        onMessage: (msg) => this.enqueue(msg),
        onRefused: (refusal) => this.onRefused(refusal),
        onDown: (attempt) => this.onSignalingDown(attempt),
        onResumeRefused: () => this.log("resume refused: joining afresh"),
      },
    );
    this.state = {
      status: "idle",
      room: opts.room,
      error: null,
      canSend: false,
      attempt: 0,
      route: null,
    };
  }

  // -- public API -----------------------------------------------------------

  getState = (): ClientState => this.state;

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /** Open the signaling socket and join the room. */
  start(): void {
    if (this.stopped || this.state.status !== "idle") return;
    this.update({ status: "connecting", error: null });
    this.socket.start();
  }

  /** Send raw text over the chat DataChannel (for the chat layer). False if none is open. */
  sendRaw(text: string): boolean {
    const session = this.chatSession();
    return session !== null && session.send(text);
  }

  /** While reconnecting, skip the rest of the backoff delay and retry now. */
  retryNow(): void {
    if (this.stopped) return;
    this.socket.retryNow();
  }

  /** Leave the room: tell the peer, close the peer connection and the socket. */
  leave(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.closeSessions();
    this.socket.leave();
    this.refresh();
  }

  // -- state ----------------------------------------------------------------

  private update(patch: Partial<ClientState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of [...this.listeners]) l(this.state);
  }

  /** Derive status, canSend and route from the facts, and publish them. */
  private refresh(patch: Partial<ClientState> = {}): void {
    const chat = this.chatSession();
    // The chat layer learns first, so it can send by the time the view sees canSend.
    this.tellChannel(chat);
    let status: Status;
    if (this.refusal) status = this.refusal.status;
    else if (this.stopped) status = "disconnected";
    else if (this.signalingDown) status = chat ? "server-reconnecting" : "reconnecting";
    else if (!this.joinedOnce) status = "connecting";
    else if (this.partner === "away") status = "peer-reconnecting";
    else if (this.session?.restarting || (this.linkLost && !chat)) status = "ice-restarting";
    else if (chat) status = "connected";
    else if (this.partner === "present") status = "peer-connecting";
    else if (this.partner === "left") status = "peer-left";
    else status = "waiting";
    const live = !this.stopped && !this.refusal;
    this.update({
      status,
      canSend: live && chat !== null,
      route: live ? (chat?.route ?? null) : null,
      ...(status === "reconnecting" || status === "server-reconnecting" ? {} : { attempt: 0 }),
      ...patch,
    });
  }

  /** The session whose DataChannel carries the chat now (the new one once open). */
  private chatSession(): PeerSession | null {
    if (this.session?.open) return this.session;
    if (this.previous?.open) return this.previous;
    return null;
  }

  /** Tell the chat layer when the channel carrying the chat changed, opened or is gone. */
  private tellChannel(chat: PeerSession | null): void {
    if (chat === this.listenedSession) return;
    this.listenedSession = chat;
    if (chat) this.opts.channel.opened(chat.channel?.protocol ?? "", chat.createdChannel);
    else this.opts.channel.closed();
  }

  // -- signaling socket -------------------------------------------------------

  private enqueue(msg: Json): void {
    this.chain = this.chain
      .then(() => this.handle(msg))
      .catch((err: unknown) => {
        this.log("signaling error", err);
        this.update({ error: `Signaling error: ${errorText(err)}` });
      });
  }

  private onRefused(refusal: Refusal): void {
    if (this.stopped) return;
    this.refusal = refusal;
    this.stopped = true;
    this.closeSessions();
    this.refresh({ error: refusal.message });
  }

  private onSignalingDown(attempt: number): void {
    if (this.stopped) return;
    this.signalingDown = true;
    // The peer connection stays: the DataChannel does not need the server.
    this.refresh({ attempt });
  }

  private signal(msg: Json): void {
    this.socket.send(msg);
  }

  // -- protocol -------------------------------------------------------------

  private async handle(msg: Json): Promise<void> {
    if (this.stopped) return;
    switch (msg.type) {
      case "joined":
        this.onJoined(msg);
        return;
      case "resumed":
        this.onResumed(msg);
        return;
      case "peer-joined":
        // A newcomer (or our partner, back without resume) will offer: its
        // offer lands on a fresh RTCPeerConnection.
        this.retireSession();
        this.earlyCandidates = [];
        this.partner = "present";
        this.linkLost = false;
        this.refresh({ error: null });
        return;
      case "leave":
      case "peer-left":
        this.onPartnerLeft();
        return;
      case "peer-reconnecting":
        if (this.partner !== "left") this.partner = "away";
        this.refresh();
        return;
      case "peer-resumed":
        this.partner = "present";
        this.refresh();
        return;
      case "offer":
      case "answer":
        await this.onDescription(msg, msg.type);
        return;
      case "candidate":
        await this.onCandidate(msg);
        return;
      case "error": {
        this.update({ error: typeof msg.message === "string" ? msg.message : "Server error" });
        return;
      }
      case "info":
        this.log("server info", msg);
        return;
      default:
        this.log("ignoring unknown message type", msg.type);
    }
  }

  private takeIceServers(msg: Json): void {
    if (Array.isArray(msg.iceServers)) {
      const fromServer = parseIceServers(msg.iceServers);
      if (fromServer.length > 0) this.iceServers = fromServer;
    }
  }

  /** A fresh join (first one, after a drop without resume, or after a refused resume). */
  private onJoined(msg: Json): void {
    const room = typeof msg.room === "string" ? msg.room : this.state.room;
    this.takeIceServers(msg);
    this.joinedOnce = true;
    this.signalingDown = false;
    this.linkLost = false;
    this.polite = msg.initiator !== true;
    // Whoever is in the room now is a new pairing as far as the server knows:
    // negotiate a new connection, but keep an open DataChannel until it is replaced.
    this.retireSession();
    this.earlyCandidates = [];
    this.clearPeerRetry();
    this.peerAttempts = 0;
    this.partner = msg.initiator === true ? "present" : "none";
    this.refresh({ room, error: null });
    if (msg.initiator === true) this.startFreshSession();
  }

  /** Our server-side session is back: same partner, same peer connection. */
  private onResumed(msg: Json): void {
    this.takeIceServers(msg);
    this.joinedOnce = true;
    this.signalingDown = false;
    if (typeof msg.initiator === "boolean") this.polite = !msg.initiator;
    const peers = typeof msg.peers === "number" ? msg.peers : 1;
    if (peers >= 2 && this.partner !== "away") this.partner = "present";
    if (peers < 2 && this.partner !== "left") this.partner = "none";
    this.refresh({ error: null });
    const s = this.session;
    if (this.partner !== "present" && this.partner !== "away") return;
    if (s && s.usable) s.resync();
    else if (!this.polite && !this.chatSession()) this.startFreshSession();
  }

  private onPartnerLeft(): void {
    this.closeSessions();
    this.earlyCandidates = [];
    this.linkLost = false;
    this.clearPeerRetry();
    this.peerAttempts = 0;
    this.partner = "left";
    this.refresh();
  }

  private async onDescription(msg: Json, kind: "offer" | "answer"): Promise<void> {
    const desc = extractDescription(msg, kind);
    if (!desc) {
      this.log(`${kind} without sdp`, msg);
      return;
    }
    const from = typeof msg.pc === "string" ? msg.pc : null;
    let s = this.session;
    const ours = s !== null && (from === null || s.remoteId === null || s.remoteId === from);
    if (kind === "answer") {
      if (!s || !ours) {
        this.log("ignoring an answer for another peer connection");
        return;
      }
    } else if (!s || !ours || !s.usable) {
      // An offer for a connection we do not have: the other side started afresh.
      s = this.newSession();
    }
    if (this.partner !== "away") this.partner = "present";
    if (kind === "offer" && from === null && s.hasRemoteDescription) {
      // Untagged renegotiation (an older client): if our connection cannot take
      // it (e.g. it comes from a new connection with new DTLS keys), start afresh.
      try {
        await s.handleDescription(desc, from);
      } catch (err) {
        this.log("offer did not fit the current connection; answering on a new one", err);
        await this.newSession().handleDescription(desc, from);
      }
      this.refresh();
      return;
    }
    await s.handleDescription(desc, from);
    this.refresh();
  }

  private async onCandidate(msg: Json): Promise<void> {
    const cand = extractCandidate(msg);
    if (!cand) return;
    const from = typeof msg.pc === "string" ? msg.pc : null;
    const s = this.session;
    if (!s) {
      this.earlyCandidates.push(cand);
      return;
    }
    if (from !== null && s.remoteId !== null && s.remoteId !== from) {
      if (this.previous && this.previous.remoteId === from) await this.previous.handleCandidate(cand);
      else this.log("ignoring a candidate for another peer connection");
      return;
    }
    await s.handleCandidate(cand);
  }

  // -- peer sessions ----------------------------------------------------------

  private newSession(): PeerSession {
    this.retireSession();
    const session = new PeerSession(
      {
        id: randomId(this.random),
        polite: this.polite,
        channelProtocol: this.opts.channel.protocol,
        iceServers: this.iceServers,
        createPeerConnection: this.opts.createPeerConnection,
        timers: this.timers,
        connectTimeoutMs: this.opts.connectTimeoutMs ?? 15_000,
        disconnectGraceMs: this.opts.disconnectGraceMs ?? 4_000,
        log: this.log,
      },
      {
        signal: (m) => this.signal(m),
        onOpen: (s) => this.onSessionOpen(s),
        onClose: (s) => this.onSessionClose(s),
        onText: (_s, text) => this.opts.channel.received(text),
        onLinkChange: () => this.refresh(),
        onTimeout: (s) => this.onSessionTimeout(s),
        onRoute: () => this.refresh(),
      },
      this.earlyCandidates,
    );
    this.earlyCandidates = [];
    this.session = session;
    return session;
  }

  /** As the offering side: a new connection and DataChannel (negotiationneeded sends the offer). */
  private startFreshSession(): void {
    const s = this.newSession();
    s.createChannel();
    this.refresh();
  }

  /** The current session makes way for a new one; an open DataChannel is kept until then. */
  private retireSession(): void {
    const s = this.session;
    this.session = null;
    if (!s) return;
    if (s.open) {
      this.dropPrevious();
      this.previous = s;
    } else {
      s.close();
    }
  }

  private dropPrevious(): void {
    if (this.handoverTimer !== null) {
      this.timers.clearTimeout(this.handoverTimer);
      this.handoverTimer = null;
    }
    this.previous?.close();
    this.previous = null;
  }

  private closeSessions(): void {
    this.clearPeerRetry();
    this.dropPrevious();
    this.session?.close();
    this.session = null;
  }

  private onSessionOpen(s: PeerSession): void {
    if (s !== this.session) return;
    this.linkLost = false;
    this.peerAttempts = 0;
    this.clearPeerRetry();
    if (this.previous && this.handoverTimer === null) {
      // Both sides switch to the new channel at once; the old one lingers a
      // moment for messages already on their way over it.
      this.handoverTimer = this.timers.setTimeout(() => {
        this.handoverTimer = null;
        this.dropPrevious();
        this.refresh();
      }, this.opts.handoverMs ?? 3_000);
    }
    this.refresh({ error: null });
  }

  private onSessionClose(s: PeerSession): void {
    if (s === this.previous) {
      this.dropPrevious();
      this.refresh();
      return;
    }
    if (s !== this.session) return;
    s.close();
    this.session = null;
    if (this.partner === "present" || this.partner === "away") {
      // The server still has our partner: the link broke, not the chat.
      this.linkLost = true;
      // Without signaling no offer can go out: joined/resumed decide then.
      if (!this.polite && !this.signalingDown) this.startFreshSession();
    }
    this.refresh();
  }

  private onSessionTimeout(s: PeerSession): void {
    if (s !== this.session || this.stopped) return;
    this.peerAttempts += 1;
    const advice = hasTurn(this.iceServers) ? TURN_FAILED_ADVICE : NO_TURN_ADVICE;
    this.log(`peer connection not up, attempt ${this.peerAttempts}`);
    this.refresh({ error: advice });
    if (this.polite) return; // the impolite side drives retries; we answer them
    this.clearPeerRetry();
    const delay = backoffDelay(this.peerBackoff, this.peerAttempts, this.random);
    this.peerRetryTimer = this.timers.setTimeout(() => {
      this.peerRetryTimer = null;
      if (this.stopped || this.session !== s || this.partner === "left" || this.partner === "none") return;
      // First an ICE restart on the connection we have, then fresh connections.
      if (this.peerAttempts === 1 && s.usable && s.hasRemoteDescription) s.restartIce();
      else this.startFreshSession();
    }, delay);
  }

  private clearPeerRetry(): void {
    if (this.peerRetryTimer !== null) {
      this.timers.clearTimeout(this.peerRetryTimer);
      this.peerRetryTimer = null;
    }
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
