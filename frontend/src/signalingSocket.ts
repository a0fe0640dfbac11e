/**
 * The signaling WebSocket of one room: opens it, parses frames, reconnects
 * with jittered exponential backoff, and resumes the server-side session when
 * the server offers it.
 *
 * Resume (opt-in, see the top-level README's "Protocol"): the first socket
 * joins with `&resumable=1`; `joined` (and later `resumed`) carries a
 * single-use `resume` token. After an unexpected close the socket reconnects
 * with `&resume=TOKEN` and keeps doing so, with backoff, until the server
 * answers `resumed` (the slot, the partner and the held messages are ours
 * again), `joined` (a server without resume treated it as a fresh join), or
 * refuses the token (`invalid_resume`, close 4410): then it joins afresh at
 * once and tells its owner through `onResumeRefused`.
 *
 * Refusals the user must act on (room full, bad room name or token, rate
 * limit) stop it for good (`onRefused`). Everything else that arrives is
 * handed to `onMessage`, in order.
 */

export type Json = Record<string, unknown>;

export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason?: string; wasClean?: boolean }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type SocketFactory = (url: string) => SocketLike;

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

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

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 10_000, factor: 2, jitter: 0.2 };

/** Jittered exponential backoff: the delay before attempt number `attempt` (1-based). */
export function backoffDelay(backoff: BackoffOptions, attempt: number, random: () => number): number {
  const base = Math.min(backoff.maxMs, backoff.initialMs * backoff.factor ** (attempt - 1));
  return Math.round(base * (1 - backoff.jitter * random()));
}

export const CLOSE_ROOM_FULL = 4409;
export const CLOSE_TRY_AGAIN_LATER = 1013;
/** The server refused a resume token (used, forged, expired, other room). */
export const CLOSE_INVALID_RESUME = 4410;

/**
 * Close codes after which retrying cannot help: the user has to change
 * something (another room, a new link/token). Every other close, including
 * 1013 (try again later), 1001 (going away) and 4008 (too slow), is retried.
 */
export const FATAL_CLOSE_CODES: Readonly<Record<number, string>> = {
  4400: "Invalid room name",
  4401: "Invalid or expired room token",
  4409: "Room is full",
  // Our slot was resumed by a newer connection with our token: never fight it.
  4411: "This chat continued on another connection",
  4429: "Too many messages",
};

/** Error codes after which the server closes the socket for good. */
export const FATAL_ERROR_CODES: ReadonlySet<string> = new Set([
  "room_full",
  "invalid_room",
  "invalid_token",
  "token_expired",
]);

const SOCKET_OPEN = 1;

export interface Refusal {
  status: "room-full" | "refused";
  message: string;
}

export interface SignalingSocketOptions {
  /** Full WebSocket URL including ?room= (and &token=). */
  url: string;
  createSocket: SocketFactory;
  timers: Timers;
  random: () => number;
  backoff: BackoffOptions;
  log: (...args: unknown[]) => void;
}

export interface SignalingSocketEvents {
  /** A frame from the server (never a refusal), in order. */
  onMessage(msg: Json): void;
  /** The server refused us for good; the socket is closed and will not retry. */
  onRefused(refusal: Refusal): void;
  /** The socket dropped; a reconnect is scheduled (attempt is 1-based). */
  onDown(attempt: number): void;
  /** The server refused our resume token: we join afresh, with a new session. */
  onResumeRefused(): void;
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export class SignalingSocket {
  private readonly opts: SignalingSocketOptions;
  private readonly events: SignalingSocketEvents;
  private socket: SocketLike | null = null;
  private retryTimer: unknown = null;
  private attempts = 0;
  private stopped = false;
  private refusal: Refusal | null = null;
  /** The single-use token from the last joined/resumed, for the next reconnect. */
  private resumeToken: string | null = null;

  constructor(opts: SignalingSocketOptions, events: SignalingSocketEvents) {
    this.opts = opts;
    this.events = events;
  }

  /** True while a socket is open (messages can be sent). */
  get open(): boolean {
    return this.socket !== null && this.socket.readyState === SOCKET_OPEN;
  }

  /** True while waiting for the backoff delay before the next attempt. */
  get waiting(): boolean {
    return this.retryTimer !== null;
  }

  get canResume(): boolean {
    return this.resumeToken !== null;
  }

  start(): void {
    if (this.socket || this.stopped) return;
    this.connect();
  }

  send(msg: Json): boolean {
    const ws = this.socket;
    if (!ws || ws.readyState !== SOCKET_OPEN) {
      this.opts.log("cannot signal, socket not open", msg.type);
      return false;
    }
    try {
      ws.send(JSON.stringify(msg));
      return true;
    } catch (err) {
      this.opts.log("socket send failed", err);
      return false;
    }
  }

  /** While waiting to reconnect, skip the rest of the delay. */
  retryNow(): void {
    if (this.stopped || this.retryTimer === null) return;
    this.cancelRetry();
    this.connect();
  }

  /** Leave for good: send `leave` (no resume grace for us) and close with 1000. */
  leave(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.resumeToken = null;
    this.cancelRetry();
    const ws = this.socket;
    this.socket = null;
    if (!ws) return;
    this.detach(ws);
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

  // -- internals --------------------------------------------------------------

  private url(): string {
    if (this.resumeToken !== null) return `${this.opts.url}&resume=${encodeURIComponent(this.resumeToken)}`;
    return `${this.opts.url}&resumable=1`;
  }

  private connect(): void {
    let ws: SocketLike;
    try {
      ws = this.opts.createSocket(this.url());
    } catch (err) {
      this.opts.log("socket create failed", err);
      this.scheduleReconnect();
      return;
    }
    this.socket = ws;
    ws.onopen = () => this.opts.log("socket open");
    ws.onmessage = (ev) => {
      if (this.socket !== ws) return;
      let msg: unknown;
      try {
        msg = JSON.parse(String(ev.data));
      } catch {
        this.opts.log("ignoring non-JSON frame", ev.data);
        return;
      }
      if (!isObject(msg) || typeof msg.type !== "string") return;
      this.onFrame(ws, msg);
    };
    ws.onerror = () => {
      /* a close event always follows */
    };
    ws.onclose = (ev) => {
      if (this.socket !== ws) return;
      this.socket = null;
      this.detach(ws);
      this.onClosed(ev.code);
    };
  }

  private onFrame(ws: SocketLike, msg: Json): void {
    if (msg.type === "error" && typeof msg.code === "string") {
      if (FATAL_ERROR_CODES.has(msg.code)) {
        // At once: the close that follows must find the reason recorded.
        const text = typeof msg.message === "string" ? msg.message : "Refused by the server";
        this.refusal = { status: msg.code === "room_full" ? "room-full" : "refused", message: text };
        this.stopped = true;
        this.cancelRetry();
        try {
          ws.close(1000, "refused");
        } catch {
          /* ignore */
        }
        this.events.onRefused(this.refusal);
        return;
      }
      if (msg.code === "invalid_resume") {
        // Close 4410 follows; the reconnect logic handles it. Nothing to show.
        this.opts.log("resume refused", msg.message);
        this.resumeToken = null;
        return;
      }
    }
    if (msg.type === "joined" || msg.type === "resumed") {
      this.attempts = 0;
      this.resumeToken = typeof msg.resume === "string" && msg.resume ? msg.resume : null;
    }
    this.events.onMessage(msg);
  }

  private onClosed(code: number): void {
    if (this.stopped) return;
    const fatal = FATAL_CLOSE_CODES[code];
    if (fatal !== undefined) {
      this.stopped = true;
      this.refusal = { status: code === CLOSE_ROOM_FULL ? "room-full" : "refused", message: fatal };
      this.events.onRefused(this.refusal);
      return;
    }
    if (code === CLOSE_INVALID_RESUME) {
      // The token is spent or expired: join afresh now (no delay: the server is up).
      this.resumeToken = null;
      this.events.onResumeRefused();
      if (!this.stopped) this.connect();
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.cancelRetry();
    this.attempts += 1;
    const delay = backoffDelay(this.opts.backoff, this.attempts, this.opts.random);
    this.opts.log(`reconnect attempt ${this.attempts} in ${delay}ms`);
    this.retryTimer = this.opts.timers.setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped) this.connect();
    }, delay);
    this.events.onDown(this.attempts);
  }

  private cancelRetry(): void {
    if (this.retryTimer !== null) {
      this.opts.timers.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  private detach(ws: SocketLike): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onerror = null;
    ws.onclose = null;
  }
}
