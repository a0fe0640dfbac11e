import {
  useCallback,
  useEffect,
  useId,
  useLayoutEffect,
  useRef,
  useState,
  type FormEvent,
  type KeyboardEvent,
} from "react";
import { copyText, createBrowserClient } from "./browser";
import { CHAT_PROTOCOL, ChatModel, MAX_MESSAGE_LENGTH, type ChatEntry, type ChatState } from "./chat";
import { splitLinks } from "./links";
import { STATUS_TEXT, type ClientState, type SignalingClient, type Status } from "./signaling";

export interface Refusal {
  room: string;
  status: "room-full" | "refused";
  message: string;
}

interface Props {
  room: string;
  /** Room token from the page link (servers started with a token secret need it). */
  token: string | null;
  onLeave: () => void;
  /** Join the same room again with a fresh client (after "Disconnected"). */
  onRejoin: () => void;
  /** The server refused us for good: room full, invalid room name or token, rate limit. */
  onRefused: (refusal: Refusal) => void;
}

/** A peer is (or was just) there: negotiating, chatting, or repairing the chat. */
const WITH_PEER: ReadonlySet<Status> = new Set<Status>([
  "peer-connecting",
  "connected",
  "ice-restarting",
  "peer-reconnecting",
  "server-reconnecting",
]);

/** The chat goes on (or is being repaired): coming back to "connected" from these is no news. */
const CHAT_KEPT: ReadonlySet<Status> = new Set<Status>(["ice-restarting", "peer-reconnecting", "server-reconnecting"]);

/** The line the chat history gets when the connection changes (the status line says it to screen readers). */
export function noteForTransition(prev: Status | null, next: Status): string | null {
  if (prev === next || prev === null) return null;
  if (next === "connected") return CHAT_KEPT.has(prev) ? null : "Connected to peer";
  if (next === "peer-left" && WITH_PEER.has(prev)) return "Peer left the room";
  const offline = next === "reconnecting" || next === "server-reconnecting";
  if (offline && WITH_PEER.has(prev) && prev !== "server-reconnecting") {
    return "Connection to the server lost";
  }
  return null;
}

/** Creates a SignalingClient and the chat model above its DataChannel, and tracks both. */
function useChatSession(
  room: string,
  token: string | null,
): [ClientState | null, ChatState, SignalingClient | null, ChatModel | null] {
  const [client, setClient] = useState<SignalingClient | null>(null);
  const [chat, setChat] = useState<ChatModel | null>(null);
  const [state, setState] = useState<ClientState | null>(null);
  const [chatState, setChatState] = useState<ChatState>({ entries: [], peerTyping: false, peerUpgraded: false });
  useEffect(() => {
    let signaling: SignalingClient | null = null;
    const model = new ChatModel({ send: (raw) => signaling?.sendRaw(raw) ?? false });
    const c = createBrowserClient(room, token, {
      protocol: CHAT_PROTOCOL,
      opened: (protocol, created) => model.channelOpened(protocol, created),
      received: (text) => model.receive(text),
      closed: () => model.channelClosed(),
    });
    signaling = c;
    let last: Status | null = null;
    const onState = (s: ClientState) => {
      const note = noteForTransition(last, s.status);
      last = s.status;
      if (note) model.note(note);
      setState(s);
    };
    const unsubscribe = c.subscribe(onState);
    const unsubscribeChat = model.subscribe(setChatState);
    setClient(c);
    setChat(model);
    onState(c.getState());
    c.start();
    // Closing the tab or navigating away: leave at once so the peer sees it.
    const onPageHide = () => c.leave();
    // Back online after a network outage: do not wait for the backoff timer.
    const onOnline = () => c.retryNow();
    window.addEventListener("pagehide", onPageHide);
    window.addEventListener("online", onOnline);
    return () => {
      window.removeEventListener("pagehide", onPageHide);
      window.removeEventListener("online", onOnline);
      unsubscribe();
      unsubscribeChat();
      c.leave();
      model.dispose();
    };
  }, [room, token]);
  return [state, chatState, client, chat];
}

/** "(3) mcp-tornado chat" while the tab is hidden and messages came in. */
function useUnreadTitle(entries: readonly ChatEntry[]): void {
  const unread = useRef(0);
  const seen = useRef(entries.length);
  const baseTitle = useRef(document.title);
  useEffect(() => {
    const fresh = entries.slice(seen.current).filter((e) => e.from === "peer").length;
    seen.current = entries.length;
    if (document.visibilityState === "hidden" && fresh > 0) {
      unread.current += fresh;
      document.title = `(${unread.current}) ${baseTitle.current}`;
    }
  }, [entries]);
  useEffect(() => {
    const base = baseTitle.current;
    const onVisibility = () => {
      if (document.visibilityState === "visible") {
        unread.current = 0;
        document.title = base;
      }
    };
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      document.removeEventListener("visibilitychange", onVisibility);
      document.title = base;
    };
  }, []);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

const DELIVERY_TEXT = { sent: "Sent", delivered: "Delivered", failed: "Not delivered" } as const;

function MessageText({ text }: { text: string }) {
  return (
    <p className="text" dir="auto">
      {splitLinks(text).map((s, i) =>
        s.kind === "link" ? (
          <a key={i} href={s.href} target="_blank" rel="noopener noreferrer">
            {s.text}
          </a>
        ) : (
          s.text
        ),
      )}
    </p>
  );
}

function Message({ entry, canRetry, onRetry }: { entry: ChatEntry; canRetry: boolean; onRetry: (id: string) => void }) {
  if (entry.from === "system") {
    // The status line already announced it: keep screen readers from hearing it twice.
    return (
      <li className="msg msg-system" data-from="system" aria-hidden="true">
        {entry.text}
      </li>
    );
  }
  const when = new Date(entry.at);
  return (
    <li className={`msg msg-${entry.from}`} data-from={entry.from} data-delivery={entry.delivery}>
      <span className="meta">
        <span className="who">{entry.from === "me" ? "You" : "Peer"}</span>
        <time dateTime={when.toISOString()}>{timeFormat.format(when)}</time>
        {entry.delivery && (
          <span className={`delivery delivery-${entry.delivery}`} data-testid="delivery">
            {DELIVERY_TEXT[entry.delivery]}
          </span>
        )}
        {entry.delivery === "failed" && (
          <button type="button" className="link-button" disabled={!canRetry} onClick={() => onRetry(entry.id)}>
            Retry
          </button>
        )}
      </span>
      <MessageText text={entry.text} />
    </li>
  );
}

export function ChatRoom({ room, token, onLeave, onRejoin, onRefused }: Props) {
  const [state, chatState, client, chat] = useChatSession(room, token);
  const [draft, setDraft] = useState("");
  const [copied, setCopied] = useState("");
  const [newCount, setNewCount] = useState(0);
  const inputRef = useRef<HTMLTextAreaElement>(null);
  const logRef = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const shownEntries = useRef(0);
  const id = useId();

  const status = state?.status ?? "connecting";
  const canSend = state?.canSend ?? false;
  const entries = chatState.entries;
  useUnreadTitle(entries);

  useEffect(() => {
    if (status === "room-full" || status === "refused") {
      onRefused({ room, status, message: state?.error ?? STATUS_TEXT[status] });
    }
  }, [status, room, state?.error, onRefused]);

  useEffect(() => {
    // On joining: the message box is where the user types (usable at once).
    inputRef.current?.focus();
  }, []);

  useEffect(() => {
    // The chat opened or closed: bring focus back only if it was lost (a
    // control that went away); never pull it from where the user put it.
    const active = document.activeElement;
    if (active === null || active === document.body) inputRef.current?.focus();
  }, [canSend]);

  const scrollToBottom = useCallback(() => {
    const el = logRef.current;
    if (el) el.scrollTop = el.scrollHeight;
    atBottom.current = true;
    setNewCount(0);
  }, []);

  useLayoutEffect(() => {
    // Follow new messages only when the reader is already at the bottom (or
    // sent one); otherwise count them for the "new messages" button.
    const fresh = entries.slice(shownEntries.current);
    shownEntries.current = entries.length;
    if (fresh.length === 0) return;
    if (atBottom.current || fresh.some((e) => e.from === "me")) scrollToBottom();
    else setNewCount((n) => n + fresh.filter((e) => e.from === "peer").length);
  }, [entries, scrollToBottom]);

  useEffect(() => {
    // The list got shorter (an on-screen keyboard opened, the message box grew
    // a line, the window shrank): a reader at the bottom stays there.
    const el = logRef.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(() => {
      if (atBottom.current) el.scrollTop = el.scrollHeight;
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  const onScroll = () => {
    const el = logRef.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
    if (atBottom.current) setNewCount(0);
  };

  const send = (e?: FormEvent) => {
    e?.preventDefault();
    if (!canSend || !chat?.send(draft)) return;
    setDraft("");
    inputRef.current?.focus();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    // Enter sends, Shift+Enter is a new line; never while an IME is composing.
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    }
  };

  const copyInvite = async () => {
    const ok = await copyText(window.location.href);
    setCopied(ok ? "Invite link copied" : `Copy this link: ${window.location.href}`);
  };

  // The signaling socket is down (the chat may still run peer to peer).
  const offline = status === "reconnecting" || status === "server-reconnecting";
  let statusText = STATUS_TEXT[status];
  if (offline && state && state.attempt > 1) statusText += ` (attempt ${state.attempt})`;

  return (
    <section className="card chat" aria-labelledby={`${id}-title`}>
      <div className="chat-header">
        <h2 id={`${id}-title`}>
          Room <span className="room-name" data-testid="room-name">{room}</span>
        </h2>
        <div className="chat-actions">
          <button type="button" className="secondary" onClick={() => void copyInvite()}>
            Copy invite link
          </button>
          <button type="button" className="secondary" onClick={onLeave}>
            Leave
          </button>
        </div>
      </div>
      <p className="copied" aria-live="polite" data-testid="copied">
        {copied}
      </p>
      <div className="status-row">
        {/* The one live region for connection changes (the route badge beside it is not live). */}
        <p className={`status status-${status}`} role="status" aria-live="polite" data-status={status}>
          <span className="dot" aria-hidden="true" />
          {statusText}
        </p>
        {state?.route && (
          <p className={`route route-${state.route}`} data-route={state.route}>
            {state.route === "relay" ? "Via relay server" : "Direct connection"}
          </p>
        )}
      </div>
      {offline && (
        <p className="retry">
          <button type="button" className="secondary" onClick={() => client?.retryNow()}>
            Retry now
          </button>
        </p>
      )}
      {status === "disconnected" && (
        <p className="retry">
          <button type="button" onClick={onRejoin}>
            Rejoin
          </button>
        </p>
      )}
      {state?.error && (
        <p className="alert" role="alert">
          {state.error}
        </p>
      )}
      <div className="log-wrap">
        <div
          className="messages"
          ref={logRef}
          role="log"
          aria-live="polite"
          aria-relevant="additions"
          aria-label="Chat messages"
          tabIndex={0}
          onScroll={onScroll}
        >
          {entries.length === 0 ? (
            <p className="empty">No messages yet.</p>
          ) : (
            <ol>
              {entries.map((m) => (
                <Message key={m.id} entry={m} canRetry={canSend} onRetry={(mid) => chat?.retry(mid)} />
              ))}
            </ol>
          )}
        </div>
        {newCount > 0 && (
          <button type="button" className="new-messages" onClick={scrollToBottom}>
            {newCount === 1 ? "1 new message" : `${newCount} new messages`} ↓
          </button>
        )}
      </div>
      <p className="typing" data-testid="typing">
        {chatState.peerTyping && canSend ? "Peer is typing…" : ""}
      </p>
      <form className="composer" onSubmit={send}>
        <label htmlFor={`${id}-msg`} className="visually-hidden">
          Message
        </label>
        <textarea
          id={`${id}-msg`}
          ref={inputRef}
          rows={1}
          autoComplete="off"
          maxLength={MAX_MESSAGE_LENGTH}
          placeholder={canSend ? "Type a message" : "Waiting for the chat to connect"}
          aria-describedby={`${id}-keys`}
          value={draft}
          onChange={(e) => {
            setDraft(e.target.value);
            chat?.draftChanged(e.target.value);
          }}
          onKeyDown={onKeyDown}
        />
        <span id={`${id}-keys`} className="visually-hidden">
          Enter sends, Shift+Enter starts a new line.
        </span>
        <button type="submit" disabled={!canSend || draft.trim() === ""}>
          Send
        </button>
      </form>
    </section>
  );
}
