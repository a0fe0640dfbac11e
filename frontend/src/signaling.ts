/**
 * Framework-free signaling + DataChannel chat state machine for mcp-tornado.
 *
 * Everything that touches the outside world (WebSocket, RTCPeerConnection,
 * timers) is injected, so the whole flow can be unit tested with fakes.
 *
 * Wire protocol: see the "Protocol" section of the top-level README.md. In short, the server tells each client
 * `joined` (with `initiator`), `peer-joined`, `leave` / `peer-left`, and
 * forwards offer/answer/candidate messages to the other peer of the room.
 * Exactly one side makes the offer: the one that joined second (initiator).
 */

export type Status =
  | "idle"
  | "connecting" // opening the signaling socket
  | "waiting" // in the room, alone
  | "peer-connecting" // a peer is there, WebRTC negotiation in progress
  | "connected" // DataChannel open
  | "peer-left" // the other peer went away; waiting for a new one
  | "reconnecting" // socket dropped, retrying with backoff
  | "room-full" // server refused: room has two peers already
  | "refused" // server refused for good: bad room name, bad/expired token, rate limit
  | "disconnected"; // user left (or gave up)

export const STATUS_TEXT: Record<Status, string> = {
  idle: "Not connected",
  connecting: "Connecting…",
  waiting: "Waiting for a peer",
  "peer-connecting": "Connecting to peer…",
  connected: "Connected",
  "peer-left": "Peer left — waiting for a new peer",
  reconnecting: "Connection lost — reconnecting…",
  "room-full": "Room is full",
  refused: "Refused by the server",
  disconnected: "Disconnected",
};

export interface ChatMessage {
  id: number;
  from: "me" | "peer" | "system";
  text: string;
  at: number;
}

export interface ClientState {
  status: Status;
  room: string;
  /** Last error from the server or from WebRTC, shown to the user. */
  error: string | null;
  messages: readonly ChatMessage[];
  /** True when the chat DataChannel is open and messages can be sent. */
  canSend: boolean;
  /** Reconnect attempt number while status is "reconnecting" (1-based). */
  attempt: number;
}

// ---------------------------------------------------------------------------
// Minimal structural interfaces of the browser objects we use.

export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason?: string; wasClean?: boolean }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

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

export interface PeerConnectionLike {
  readonly connectionState: string;
  readonly signalingState: string;
  readonly localDescription: SessionDescription | null;
  createOffer(): Promise<SessionDescription>;
  createAnswer(): Promise<SessionDescription>;
  setLocalDescription(desc: SessionDescription): Promise<void>;
  setRemoteDescription(desc: SessionDescription): Promise<void>;
  addIceCandidate(candidate: IceCandidateInit): Promise<void>;
  createDataChannel(label: string, options?: { ordered?: boolean; protocol?: string }): DataChannelLike;
  close(): void;
  onicecandidate:
    | ((ev: { candidate: (IceCandidateInit & { toJSON?: () => IceCandidateInit }) | null }) => void)
    | null;
  ondatachannel: ((ev: { channel: DataChannelLike }) => void) | null;
  onconnectionstatechange: ((ev: unknown) => void) | null;
}

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export type SocketFactory = (url: string) => SocketLike;
export type PeerConnectionFactory = (config: { iceServers: IceServer[] }) => PeerConnectionLike;

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** 0..1: fraction of the delay that is randomised (spread reconnect storms). */
  jitter: number;
}

export interface ClientOptions {
  /** Full WebSocket URL, including ?room=. Use signalUrl() to build it. */
  url: string;
  room: string;
  createSocket: SocketFactory;
  createPeerConnection: PeerConnectionFactory;
  iceServers?: IceServer[];
  backoff?: Partial<BackoffOptions>;
  timers?: Timers;
  random?: () => number;
  now?: () => number;
  /** Called for diagnostics; defaults to no-op. */
  log?: (...args: unknown[]) => void;
  /** The chat layer above the DataChannel (chat.ts); see ChannelListener. */
  channel?: ChannelListener;
}

/**
 * Hands the chat DataChannel's raw text to the chat layer (chat.ts), which
 * sends its own raw text with SignalingClient.sendRaw. Without a listener,
 * text frames become "peer" messages here (the original behaviour).
 */
export interface ChannelListener {
  /** Announced as the DataChannel's sub-protocol when we create the channel. */
  protocol: string;
  /** The chat channel opened; `protocol` as its creator announced it, `created` if we did. */
  opened(protocol: string, created: boolean): void;
  /** A text frame, untouched. */
  received(text: string): void;
  /** The chat channel closed (or was dropped with its peer connection). */
  closed(): void;
}

export const CLOSE_ROOM_FULL = 4409;
export const CLOSE_TRY_AGAIN_LATER = 1013;

/**
 * Close codes after which retrying cannot help: the user has to change
 * something (another room, a new link/token). Every other close, including
 * 1013 (try again later), 1001 (going away) and 4008 (too slow), is retried.
 */
export const FATAL_CLOSE_CODES: Readonly<Record<number, string>> = {
  4400: "Invalid room name",
  4401: "Invalid or expired room token",
  4409: "Room is full",
  4429: "Too many messages",
};

/** Error codes after which the server closes the socket for good. */
const FATAL_ERROR_CODES = new Set(["room_full", "invalid_room", "invalid_token", "token_expired"]);
export const DATA_CHANNEL_LABEL = "chat";
const SOCKET_OPEN = 1;

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 10_000, factor: 2, jitter: 0.2 };

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

/** Letters, marks, numbers, punctuation, symbols and spaces (the server's rule). */
const ROOM_CHARS = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]+$/u;
export const MAX_ROOM_LENGTH = 64;

/**
 * Room names as the server accepts them: trimmed, 1-64 characters, no control
 * or invisible characters. Returns null if invalid.
 */
export function normaliseRoom(raw: string | null | undefined): string | null {
  if (raw == null) return null;
  const room = raw.trim();
  const length = [...room].length;
  if (length === 0 || length > MAX_ROOM_LENGTH || !ROOM_CHARS.test(room)) return null;
  return room;
}

type Json = Record<string, unknown>;

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

interface PeerSession {
  pc: PeerConnectionLike;
  channel: DataChannelLike | null;
  remoteSet: boolean;
  pending: IceCandidateInit[];
}

export class SignalingClient {
  private readonly opts: ClientOptions;
  private readonly backoff: BackoffOptions;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly log: (...args: unknown[]) => void;

  private state: ClientState;
  private listeners = new Set<Listener>();

  private socket: SocketLike | null = null;
  private session: PeerSession | null = null;
  /** Candidates that arrived before any peer connection existed. */
  private earlyCandidates: IceCandidateInit[] = [];
  private retryTimer: unknown = null;
  private attempts = 0;
  private stopped = false;
  /** Set when the server refused us for good (room full, bad token...). */
  private refusal: { status: "room-full" | "refused"; message: string } | null = null;
  private nextMessageId = 1;
  /** Incoming signaling messages are handled strictly one after another. */
  private chain: Promise<void> = Promise.resolve();

  constructor(opts: ClientOptions) {
    this.opts = opts;
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
    this.timers = opts.timers ?? {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
    };
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? (() => undefined);
    this.state = {
      status: "idle",
      room: opts.room,
      error: null,
      messages: [],
      canSend: false,
      attempt: 0,
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
    if (this.socket || this.stopped) return;
    this.update({ status: "connecting", error: null });
    this.openSocket();
  }

  /** Send a chat message over the DataChannel. Returns false if not possible. */
  send(text: string): boolean {
    const body = text.trim();
    const ch = this.session?.channel;
    if (!body || !ch || ch.readyState !== "open") return false;
    try {
      ch.send(body);
    } catch (err) {
      this.log("send failed", err);
      return false;
    }
    this.addMessage("me", body);
    return true;
  }

  /** Send raw text over the open chat DataChannel (for the chat layer). False if not open. */
  sendRaw(text: string): boolean {
    const ch = this.session?.channel;
    if (!ch || ch.readyState !== "open") return false;
    try {
      ch.send(text);
    } catch (err) {
      this.log("send failed", err);
      return false;
    }
    return true;
  }

  /** While reconnecting, skip the rest of the backoff delay and retry now. */
  retryNow(): void {
    if (this.stopped || this.retryTimer === null) return;
    this.cancelRetry();
    this.openSocket();
  }

  /** Leave the room: tell the peer, close the peer connection and the socket. */
  leave(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.cancelRetry();
    this.closePeer();
    const ws = this.socket;
    this.socket = null;
    if (ws) {
      this.detachSocket(ws);
      if (ws.readyState === SOCKET_OPEN) {
        try {
          ws.send(JSON.stringify({ type: "leave" }));
        } catch {
          /* ignore */
        }
      }
      try {
        ws.close(1000, "leave");
      } catch {
        /* ignore */
      }
    }
    this.update({ status: this.refusal?.status ?? "disconnected", canSend: false, attempt: 0 });
  }

  // -- state ----------------------------------------------------------------

  private update(patch: Partial<ClientState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of [...this.listeners]) l(this.state);
  }

  private addMessage(from: ChatMessage["from"], text: string): void {
    const msg: ChatMessage = { id: this.nextMessageId++, from, text, at: this.now() };
    this.update({ messages: [...this.state.messages, msg] });
  }

  // -- socket ---------------------------------------------------------------

  private openSocket(): void {
    let ws: SocketLike;
    try {
      ws = this.opts.createSocket(this.opts.url);
    } catch (err) {
      this.log("socket create failed", err);
      this.scheduleReconnect();
      return;
    }
    this.socket = ws;
    ws.onopen = () => {
      this.log("socket open");
    };
    ws.onmessage = (ev) => {
      if (this.socket !== ws) return;
      let msg: unknown;
      try {
        msg = JSON.parse(String(ev.data));
      } catch {
        this.log("ignoring non-JSON frame", ev.data);
        return;
      }
      if (!isObject(msg) || typeof msg.type !== "string") return;
      if (msg.type === "error" && typeof msg.code === "string" && FATAL_ERROR_CODES.has(msg.code)) {
        // At once, not queued: a refusal is followed by the close, and the
        // close must find the server's reason already recorded.
        this.onError(msg);
        return;
      }
      const m = msg;
      this.chain = this.chain
        .then(() => this.handle(m))
        .catch((err: unknown) => {
          this.log("signaling error", err);
          this.update({ error: `Signaling error: ${errorText(err)}` });
        });
    };
    ws.onerror = () => {
      /* a close event always follows */
    };
    ws.onclose = (ev) => {
      if (this.socket !== ws) return;
      this.socket = null;
      this.detachSocket(ws);
      this.onSocketClosed(ev.code);
    };
  }

  private detachSocket(ws: SocketLike): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onerror = null;
    ws.onclose = null;
  }

  private onSocketClosed(code: number): void {
    if (this.stopped) return;
    const fatal = FATAL_CLOSE_CODES[code];
    if (this.refusal || fatal !== undefined) {
      const refusal = this.refusal ?? {
        status: code === CLOSE_ROOM_FULL ? ("room-full" as const) : ("refused" as const),
        message: fatal ?? "Refused by the server",
      };
      this.refusal = refusal;
      this.stopped = true;
      this.closePeer();
      this.update({ status: refusal.status, canSend: false, error: refusal.message });
      return;
    }
    // Unexpected drop (including 1013 "try again later" and 1001 going away):
    // the server has told our peer we left, so drop the peer connection too and
    // rejoin; whoever is in the room then gets peer-joined and we make the offer.
    const hadPeer = this.session !== null;
    this.closePeer();
    if (hadPeer) this.addMessage("system", "Connection to the server lost");
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.cancelRetry();
    this.attempts += 1;
    const base = Math.min(
      this.backoff.maxMs,
      this.backoff.initialMs * this.backoff.factor ** (this.attempts - 1),
    );
    const delay = Math.round(base * (1 - this.backoff.jitter * this.random()));
    this.update({ status: "reconnecting", canSend: false, attempt: this.attempts });
    this.log(`reconnect attempt ${this.attempts} in ${delay}ms`);
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      if (this.stopped) return;
      this.openSocket();
    }, delay);
  }

  private cancelRetry(): void {
    if (this.retryTimer !== null) {
      this.timers.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  private signal(msg: Json): void {
    const ws = this.socket;
    if (!ws || ws.readyState !== SOCKET_OPEN) {
      this.log("cannot signal, socket not open", msg.type);
      return;
    }
    ws.send(JSON.stringify(msg));
  }

  // -- protocol -------------------------------------------------------------

  private async handle(msg: Json): Promise<void> {
    if (this.stopped) return;
    switch (msg.type) {
      case "joined": {
        this.attempts = 0;
        const room = typeof msg.room === "string" ? msg.room : this.state.room;
        this.update({ room, error: null, attempt: 0 });
        if (msg.initiator === true) {
          await this.startAsInitiator();
        } else {
          this.update({ status: "waiting" });
        }
        return;
      }
      case "peer-joined": {
        // A newcomer is the initiator and will send the offer: drop any stale
        // session so the offer lands on a fresh RTCPeerConnection.
        this.closePeer();
        this.earlyCandidates = [];
        this.update({ status: "peer-connecting", error: null });
        return;
      }
      case "leave":
      case "peer-left": {
        // Announce once, even if the DataChannel already reported the loss.
        const wasPeer =
          this.state.status !== "peer-left" &&
          (this.session !== null || this.state.status === "connected" || this.state.status === "peer-connecting");
        this.closePeer();
        this.earlyCandidates = [];
        if (wasPeer) this.addMessage("system", "Peer left the room");
        this.update({ status: "peer-left", canSend: false });
        return;
      }
      case "offer":
        await this.onOffer(msg);
        return;
      case "answer":
        await this.onAnswer(msg);
        return;
      case "candidate":
        await this.onCandidate(msg);
        return;
      case "error":
        this.onError(msg);
        return;
      case "info":
        this.log("server info", msg);
        return;
      default:
        this.log("ignoring unknown message type", msg.type);
    }
  }

  private onError(msg: Json): void {
    if (this.stopped) return;
    const text = typeof msg.message === "string" ? msg.message : "Server error";
    if (typeof msg.code === "string" && FATAL_ERROR_CODES.has(msg.code)) {
      const status = msg.code === "room_full" ? "room-full" : "refused";
      this.refusal = { status, message: text };
      this.closePeer();
      this.update({ status, error: text, canSend: false });
      // The server closes the socket (4409, 4400, 4401); close from our side too.
      const ws = this.socket;
      if (ws) {
        try {
          ws.close(1000, "refused");
        } catch {
          /* ignore */
        }
      }
    } else {
      this.update({ error: text });
    }
  }

  private newSession(): PeerSession {
    this.closePeer();
    const pc = this.opts.createPeerConnection({ iceServers: this.opts.iceServers ?? [] });
    const session: PeerSession = { pc, channel: null, remoteSet: false, pending: [...this.earlyCandidates] };
    this.earlyCandidates = [];
    this.session = session;
    pc.onicecandidate = (ev) => {
      if (this.session !== session || !ev.candidate) return;
      const c = typeof ev.candidate.toJSON === "function" ? ev.candidate.toJSON() : ev.candidate;
      if (!c.candidate) return; // end-of-candidates marker
      this.signal({
        type: "candidate",
        candidate: { candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null },
      });
    };
    pc.ondatachannel = (ev) => {
      if (this.session !== session) return;
      if (ev.channel.label !== DATA_CHANNEL_LABEL) return;
      this.attachChannel(session, ev.channel);
    };
    pc.onconnectionstatechange = () => {
      if (this.session !== session) return;
      if (pc.connectionState === "failed") {
        this.update({ error: "Peer connection failed" });
      }
    };
    return session;
  }

  private attachChannel(session: PeerSession, ch: DataChannelLike, created = false): void {
    session.channel = ch;
    let opened = false;
    const listener = this.opts.channel;
    ch.onopen = () => {
      // Chromium may hand over an already-open channel and still fire "open".
      if (this.session !== session || opened) return;
      opened = true;
      listener?.opened(ch.protocol ?? "", created);
      this.update({ status: "connected", canSend: true, error: null });
      this.addMessage("system", "Connected to peer");
    };
    ch.onclose = () => {
      if (this.session !== session) return;
      session.channel = null;
      if (opened) listener?.closed();
      if (this.state.status === "connected") {
        this.update({ status: "peer-left", canSend: false });
        this.addMessage("system", "Peer left the room");
      }
    };
    ch.onmessage = (ev) => {
      if (this.session !== session) return;
      const text = typeof ev.data === "string" ? ev.data : "";
      if (listener) listener.received(text);
      else if (text) this.addMessage("peer", text);
    };
    if (ch.readyState === "open") ch.onopen(undefined);
  }

  private async startAsInitiator(): Promise<void> {
    this.update({ status: "peer-connecting" });
    const session = this.newSession();
    const protocol = this.opts.channel?.protocol;
    const options = protocol ? { ordered: true, protocol } : { ordered: true };
    const ch = session.pc.createDataChannel(DATA_CHANNEL_LABEL, options);
    this.attachChannel(session, ch, true);
    const offer = await session.pc.createOffer();
    if (this.session !== session) return;
    await session.pc.setLocalDescription(offer);
    if (this.session !== session) return;
    const local = session.pc.localDescription ?? offer;
    this.signal({ type: "offer", sdp: local.sdp ?? "" });
  }

  private async onOffer(msg: Json): Promise<void> {
    const desc = extractDescription(msg, "offer");
    if (!desc) {
      this.log("offer without sdp", msg);
      return;
    }
    // Answerer side: always answer on a fresh connection (a new offer means a
    // new peer or a restarted one; in-session renegotiation is not used here).
    const session = this.newSession();
    this.update({ status: "peer-connecting" });
    await session.pc.setRemoteDescription(desc);
    if (this.session !== session) return;
    session.remoteSet = true;
    await this.flushCandidates(session);
    if (this.session !== session) return;
    const answer = await session.pc.createAnswer();
    if (this.session !== session) return;
    await session.pc.setLocalDescription(answer);
    if (this.session !== session) return;
    const local = session.pc.localDescription ?? answer;
    this.signal({ type: "answer", sdp: local.sdp ?? "" });
  }

  private async onAnswer(msg: Json): Promise<void> {
    const desc = extractDescription(msg, "answer");
    const session = this.session;
    if (!desc || !session) return;
    if (session.pc.signalingState !== "have-local-offer") {
      this.log("ignoring answer in state", session.pc.signalingState);
      return;
    }
    await session.pc.setRemoteDescription(desc);
    if (this.session !== session) return;
    session.remoteSet = true;
    await this.flushCandidates(session);
  }

  private async onCandidate(msg: Json): Promise<void> {
    const cand = extractCandidate(msg);
    if (!cand) return;
    const session = this.session;
    if (!session) {
      this.earlyCandidates.push(cand);
      return;
    }
    if (!session.remoteSet) {
      session.pending.push(cand);
      return;
    }
    await this.addCandidate(session, cand);
  }

  private async flushCandidates(session: PeerSession): Promise<void> {
    const queued = session.pending.splice(0);
    for (const c of queued) {
      if (this.session !== session) return;
      await this.addCandidate(session, c);
    }
  }

  private async addCandidate(session: PeerSession, c: IceCandidateInit): Promise<void> {
    try {
      await session.pc.addIceCandidate(c);
    } catch (err) {
      // A bad candidate must not kill the session; others may still work.
      this.log("addIceCandidate failed", err);
    }
  }

  private closePeer(): void {
    const s = this.session;
    this.session = null;
    if (!s) return;
    if (s.channel) {
      this.opts.channel?.closed(); // harmless for a channel that never opened
      s.channel.onopen = null;
      s.channel.onclose = null;
      s.channel.onmessage = null;
      try {
        s.channel.close();
      } catch {
        /* ignore */
      }
    }
    s.pc.onicecandidate = null;
    s.pc.ondatachannel = null;
    s.pc.onconnectionstatechange = null;
    try {
      s.pc.close();
    } catch {
      /* ignore */
    }
    if (this.state.canSend) this.update({ canSend: false });
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
