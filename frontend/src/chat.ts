/**
 * The chat above the DataChannel: the message list, its wire format, delivery
 * state (sent, delivered, failed with retry) and "peer is typing".
 *
 * Framework-free like signaling.ts: it sends raw text through an injected
 * `send` (SignalingClient.sendRaw) and is handed every raw text frame the
 * channel receives (`receive`). Timers and the clock are injected for tests.
 *
 * Wire format, backward compatible with peers that send plain text (older
 * clients, examples/aiortc_peer.py, any bot): each side starts in plain mode,
 * where a chat message is the text itself and nothing else is ever sent, and
 * switches to envelopes only once it knows the peer speaks them:
 *
 *  - the side that creates the channel announces CHAT_PROTOCOL as the
 *    DataChannel's sub-protocol; a new client that accepts such a channel
 *    answers at once with `{"mcp":"chat","type":"hello","v":1}`;
 *  - receiving that hello switches the creator to envelopes too.
 *
 * Envelopes (one JSON object per DataChannel message):
 *   {"mcp":"chat","type":"msg","id":"…","text":"…","at":<ms since epoch>}
 *   {"mcp":"chat","type":"ack","id":"…"}         (delivered; sent for every msg, duplicates too)
 *   {"mcp":"chat","type":"typing","on":true|false}
 * A frame that is not an envelope is shown as a plain-text message, so a peer
 * can never make us hide or misread what it typed.
 */

export const CHAT_PROTOCOL = "mcp-chat.v1";

export type Delivery = "sent" | "delivered" | "failed";

export interface ChatEntry {
  /** Unique in this list; for messages the id on the wire. */
  id: string;
  from: "me" | "peer" | "system";
  text: string;
  /** Milliseconds since the epoch: when it was sent (ours) or received. */
  at: number;
  /** Our messages only. Plain-text peers cannot acknowledge: they stay "sent". */
  delivery?: Delivery;
}

export interface ChatState {
  entries: readonly ChatEntry[];
  /** The peer is typing (expires by itself if its "stopped" signal is lost). */
  peerTyping: boolean;
  /** True once the peer is known to speak envelopes (acks, typing). */
  peerUpgraded: boolean;
}

export interface ChatTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ChatOptions {
  /** Send one raw text frame over the DataChannel; false if it is not open. */
  send: (raw: string) => boolean;
  now?: () => number;
  timers?: ChatTimers;
  newId?: () => string;
  /** A message not acknowledged within this many ms is marked failed. */
  ackTimeoutMs?: number;
  /** The peer's "typing" shows this long after its last typing signal. */
  typingTimeoutMs?: number;
  /** While we type, a typing signal goes out at most this often. */
  typingIntervalMs?: number;
  /** Longest message accepted (in UTF-16 units, like the textarea's maxLength). */
  maxLength?: number;
}

export const MAX_MESSAGE_LENGTH = 4000;
const SEEN_IDS_KEPT = 1000;

type Listener = (state: ChatState) => void;

type Envelope =
  | { type: "hello" }
  | { type: "msg"; id: string; text: string }
  | { type: "ack"; id: string }
  | { type: "typing"; on: boolean };

/** Parse a frame as an envelope, or null when it is plain text (or a malformed envelope). */
export function parseEnvelope(raw: string): Envelope | null {
  if (!raw.startsWith("{")) return null;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  if (o.mcp !== "chat") return null;
  switch (o.type) {
    case "hello":
      return { type: "hello" };
    case "msg":
      if (typeof o.id === "string" && o.id.length > 0 && o.id.length <= 64 && typeof o.text === "string") {
        return { type: "msg", id: o.id, text: o.text };
      }
      return null;
    case "ack":
      return typeof o.id === "string" ? { type: "ack", id: o.id } : null;
    case "typing":
      return { type: "typing", on: o.on !== false };
    default:
      return null;
  }
}

function envelope(body: Record<string, unknown>): string {
  return JSON.stringify({ mcp: "chat", ...body });
}

function randomId(): string {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export class ChatModel {
  private readonly sendRaw: (raw: string) => boolean;
  private readonly now: () => number;
  private readonly timers: ChatTimers;
  private readonly newId: () => string;
  private readonly ackTimeoutMs: number;
  private readonly typingTimeoutMs: number;
  private readonly typingIntervalMs: number;
  private readonly maxLength: number;

  private state: ChatState = { entries: [], peerTyping: false, peerUpgraded: false };
  private listeners = new Set<Listener>();
  private open = false;
  private ackTimers = new Map<string, unknown>();
  private typingTimer: unknown = null;
  private lastTypingSent = 0;
  private weAreTyping = false;
  /** Ids of the peer's messages already shown (a retry must not show twice). */
  private seen = new Set<string>();
  private nextLocal = 1;

  constructor(opts: ChatOptions) {
    this.sendRaw = opts.send;
    this.now = opts.now ?? Date.now;
    this.timers = opts.timers ?? {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof globalThis.setTimeout>),
    };
    this.newId = opts.newId ?? randomId;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 10_000;
    this.typingTimeoutMs = opts.typingTimeoutMs ?? 6_000;
    this.typingIntervalMs = opts.typingIntervalMs ?? 2_500;
    this.maxLength = opts.maxLength ?? MAX_MESSAGE_LENGTH;
  }

  getState = (): ChatState => this.state;

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /**
   * A chat DataChannel opened. `protocol` is the sub-protocol its creator
   * announced; `created` is true on the side that created it.
   */
  channelOpened(protocol: string, created: boolean): void {
    // peerUpgraded is reset when a channel closes, not here: the peer's hello
    // may be handed over before this side's own "open".
    this.open = true;
    this.weAreTyping = false;
    if (!created && protocol === CHAT_PROTOCOL) {
      this.sendRaw(envelope({ type: "hello", v: 1 }));
      this.update({ peerUpgraded: true });
    }
  }

  /** The channel closed: whatever the peer has not acknowledged has failed. */
  channelClosed(): void {
    this.open = false;
    this.weAreTyping = false;
    this.clearTypingTimer();
    const failed = new Set(this.ackTimers.keys());
    for (const h of this.ackTimers.values()) this.timers.clearTimeout(h);
    this.ackTimers.clear();
    // The next channel may lead to another client: plain until it says hello.
    if (this.state.peerTyping || this.state.peerUpgraded) this.update({ peerTyping: false, peerUpgraded: false });
    if (failed.size > 0) this.setDelivery(failed, "failed");
  }

  /** Add a line from the app itself ("Peer left the room"). */
  note(text: string): void {
    this.append({ id: `n${this.nextLocal++}`, from: "system", text, at: this.now() });
  }

  /** Send a message; false (nothing added) for empty text. */
  send(text: string): boolean {
    const body = text.trim();
    if (!body || body.length > this.maxLength) return false;
    const entry: ChatEntry = { id: this.newId(), from: "me", text: body, at: this.now(), delivery: "sent" };
    this.append(entry);
    this.weAreTyping = false;
    this.transmit(entry);
    return true;
  }

  /** Send a failed message again (same id: a peer that got it already shows it once). */
  retry(id: string): boolean {
    const entry = this.state.entries.find((e) => e.id === id && e.from === "me");
    if (!entry || entry.delivery !== "failed" || !this.open) return false;
    this.setDelivery(new Set([id]), "sent");
    return this.transmit({ ...entry, delivery: "sent" });
  }

  /** The draft changed: tell an upgraded peer we are typing (throttled) or stopped. */
  draftChanged(draft: string): void {
    if (!this.open || !this.state.peerUpgraded) return;
    const typing = draft.trim() !== "";
    const now = this.now();
    if (typing && (!this.weAreTyping || now - this.lastTypingSent >= this.typingIntervalMs)) {
      this.weAreTyping = true;
      this.lastTypingSent = now;
      this.sendRaw(envelope({ type: "typing", on: true }));
    } else if (!typing && this.weAreTyping) {
      this.weAreTyping = false;
      this.sendRaw(envelope({ type: "typing", on: false }));
    }
  }

  /** A raw text frame from the DataChannel. */
  receive(raw: string): void {
    const env = parseEnvelope(raw);
    if (env === null) {
      if (raw !== "") this.addPeerMessage(this.newId(), raw);
      return;
    }
    switch (env.type) {
      case "hello":
        this.update({ peerUpgraded: true });
        return;
      case "msg":
        this.update({ peerUpgraded: true });
        this.sendRaw(envelope({ type: "ack", id: env.id }));
        if (!this.seen.has(env.id)) {
          this.remember(env.id);
          this.addPeerMessage(`p:${env.id}`, env.text);
        }
        return;
      case "ack": {
        // A late ack (after the timeout marked it failed) still means delivered.
        const h = this.ackTimers.get(env.id);
        if (h !== undefined) this.timers.clearTimeout(h);
        this.ackTimers.delete(env.id);
        this.setDelivery(new Set([env.id]), "delivered");
        return;
      }
      case "typing":
        this.clearTypingTimer();
        if (env.on) {
          this.typingTimer = this.timers.setTimeout(() => {
            this.typingTimer = null;
            this.update({ peerTyping: false });
          }, this.typingTimeoutMs);
        }
        this.update({ peerTyping: env.on });
        return;
    }
  }

  /** Stop every timer (the view is going away). */
  dispose(): void {
    for (const h of this.ackTimers.values()) this.timers.clearTimeout(h);
    this.ackTimers.clear();
    this.clearTypingTimer();
    this.listeners.clear();
  }

  // -- internals -------------------------------------------------------------

  private transmit(entry: ChatEntry): boolean {
    const upgraded = this.state.peerUpgraded;
    const raw = upgraded ? envelope({ type: "msg", id: entry.id, text: entry.text, at: entry.at }) : entry.text;
    if (!this.open || !this.sendRaw(raw)) {
      this.setDelivery(new Set([entry.id]), "failed");
      return false;
    }
    if (upgraded) {
      const h = this.timers.setTimeout(() => {
        this.ackTimers.delete(entry.id);
        this.setDelivery(new Set([entry.id]), "failed");
      }, this.ackTimeoutMs);
      this.ackTimers.set(entry.id, h);
    }
    return true;
  }

  private addPeerMessage(id: string, text: string): void {
    this.clearTypingTimer();
    this.state = { ...this.state, peerTyping: false };
    this.append({ id, from: "peer", text, at: this.now() });
  }

  private remember(id: string): void {
    this.seen.add(id);
    if (this.seen.size > SEEN_IDS_KEPT) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  private clearTypingTimer(): void {
    if (this.typingTimer !== null) {
      this.timers.clearTimeout(this.typingTimer);
      this.typingTimer = null;
    }
  }

  private setDelivery(ids: ReadonlySet<string>, delivery: Delivery): void {
    const entries = this.state.entries.map((e) =>
      e.from === "me" && ids.has(e.id) && e.delivery !== delivery ? { ...e, delivery } : e,
    );
    this.update({ entries });
  }

  private append(entry: ChatEntry): void {
    this.update({ entries: [...this.state.entries, entry] });
  }

  private update(patch: Partial<ChatState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of [...this.listeners]) l(this.state);
  }
}
