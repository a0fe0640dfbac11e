import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { createBrowserClient } from "./browser";
import { STATUS_TEXT, type ClientState, type SignalingClient } from "./signaling";

interface Props {
  room: string;
  /** Room token from the page link (servers started with a token secret need it). */
  token: string | null;
  onLeave: () => void;
  /** The server refused us for good: room full, invalid room name or token. */
  onRefused: (room: string, status: "room-full" | "refused", message: string) => void;
}

/** Creates a SignalingClient for the room and tracks its state. */
function useSignaling(room: string, token: string | null): [ClientState | null, SignalingClient | null] {
  const [client, setClient] = useState<SignalingClient | null>(null);
  const [state, setState] = useState<ClientState | null>(null);
  useEffect(() => {
    const c = createBrowserClient(room, token);
    const unsubscribe = c.subscribe(setState);
    setClient(c);
    setState(c.getState());
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
      c.leave();
    };
  }, [room, token]);
  return [state, client];
}

export function ChatRoom({ room, token, onLeave, onRefused }: Props) {
  const [state, client] = useSignaling(room, token);
  const [draft, setDraft] = useState("");
  const inputRef = useRef<HTMLInputElement>(null);
  const logRef = useRef<HTMLDivElement>(null);
  const id = useId();

  const status = state?.status ?? "connecting";
  const canSend = state?.canSend ?? false;
  const messages = state?.messages ?? [];

  useEffect(() => {
    if (status === "room-full" || status === "refused") {
      onRefused(room, status, state?.error ?? STATUS_TEXT[status]);
    }
  }, [status, room, state?.error, onRefused]);

  useEffect(() => {
    if (canSend) inputRef.current?.focus();
  }, [canSend]);

  useEffect(() => {
    const el = logRef.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [messages.length]);

  const send = (e: FormEvent) => {
    e.preventDefault();
    if (client?.send(draft)) setDraft("");
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
        <button type="button" className="secondary" onClick={onLeave}>
          Leave
        </button>
      </div>
      <p className={`status status-${status}`} role="status" aria-live="polite" data-status={status}>
        <span className="dot" aria-hidden="true" />
        {statusText}
      </p>
      {state?.route && (
        <p className={`route route-${state.route}`} data-route={state.route}>
          {state.route === "relay" ? "Via relay server" : "Direct connection"}
        </p>
      )}
      {offline && (
        <p className="retry">
          <button type="button" className="secondary" onClick={() => client?.retryNow()}>
            Retry now
          </button>
        </p>
      )}
      {state?.error && (
        <p className="alert" role="alert">
          {state.error}
        </p>
      )}
      <div className="messages" ref={logRef} role="log" aria-live="polite" aria-label="Chat messages" tabIndex={0}>
        {messages.length === 0 ? (
          <p className="empty">No messages yet.</p>
        ) : (
          <ol>
            {messages.map((m) => (
              <li key={m.id} className={`msg msg-${m.from}`} data-from={m.from}>
                {m.from !== "system" && <span className="who">{m.from === "me" ? "You" : "Peer"}</span>}
                <span className="text">{m.text}</span>
              </li>
            ))}
          </ol>
        )}
      </div>
      <form className="composer" onSubmit={send}>
        <label htmlFor={`${id}-msg`} className="visually-hidden">
          Message
        </label>
        <input
          id={`${id}-msg`}
          ref={inputRef}
          type="text"
          autoComplete="off"
          maxLength={4000}
          placeholder={canSend ? "Type a message" : "Waiting for the chat to connect"}
          value={draft}
          disabled={!canSend}
          onChange={(e) => setDraft(e.target.value)}
        />
        <button type="submit" disabled={!canSend || draft.trim() === ""}>
          Send
        </button>
      </form>
    </section>
  );
}
