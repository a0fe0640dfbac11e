import { useCallback, useEffect, useState } from "react";
import { ChatRoom, type Refusal } from "./ChatRoom";
import { JoinForm } from "./JoinForm";
import { roomFromLocation, setRoomInLocation } from "./browser";
import { configuredMaxRoomLength } from "./config";
import { validRoom } from "./roomName";
import { FATAL_CLOSE_CODES } from "./signaling";

interface Active {
  room: string;
  token: string | null;
  /** Bumped on every join so re-joining the same room makes a fresh client. */
  key: number;
}

interface Initial {
  room: string | null;
  token: string | null;
  invalidRoom: string | null;
}

function readLocation(maxLength: number): Initial {
  const { room: raw, token } = roomFromLocation();
  const room = validRoom(raw, maxLength);
  return { room, token: room ? token : null, invalidRoom: raw && !room ? raw : null };
}

/** What the join form says after the server refused us for good. */
export function refusalNotice({ room, status, message }: Refusal): string {
  if (status === "room-full") return `${message}: “${room}” already has two people. Pick another room.`;
  if (message === FATAL_CLOSE_CODES[4429]) {
    return "The server disconnected you for sending too many messages too quickly (rate limit). Wait a few seconds, then join again.";
  }
  return `${message}. Pick another room, or ask for a new link.`;
}

export function App() {
  const [maxLength] = useState(configuredMaxRoomLength);
  const [initial] = useState(() => readLocation(maxLength));
  const [active, setActive] = useState<Active | null>(() =>
    initial.room ? { room: initial.room, token: initial.token, key: 1 } : null,
  );
  const [lastRoom, setLastRoom] = useState(initial.room ?? initial.invalidRoom ?? "");
  const [notice, setNotice] = useState<string | null>(() =>
    initial.invalidRoom !== null ? "That room name is not valid. Pick another room." : null,
  );

  const join = useCallback(
    (room: string) => {
      // The link's token only grants the link's room.
      const token = room === initial.room ? initial.token : null;
      setNotice(null);
      setLastRoom(room);
      // A history entry per join: Back returns to the form, not off the app.
      setRoomInLocation(room, token, true);
      setActive((prev) => ({ room, token, key: (prev?.key ?? 0) + 1 }));
    },
    [initial],
  );

  const rejoin = useCallback(() => {
    setActive((prev) => (prev ? { ...prev, key: prev.key + 1 } : prev));
  }, []);

  const leave = useCallback(() => {
    setRoomInLocation(null, null, true);
    setActive(null);
  }, []);

  const refused = useCallback((refusal: Refusal) => {
    setRoomInLocation(null);
    setNotice(refusalNotice(refusal));
    setActive(null);
  }, []);

  useEffect(() => {
    // Back and Forward between our own entries: follow the address bar.
    const onPopState = () => {
      const now = readLocation(maxLength);
      setNotice(null);
      if (now.room) {
        const room = now.room;
        setLastRoom(room);
        setActive((prev) =>
          prev?.room === room ? prev : { room, token: now.token, key: (prev?.key ?? 0) + 1 },
        );
      } else {
        setActive(null);
      }
    };
    // Restored from the back/forward cache: pagehide left the room, join again.
    const onPageShow = (e: PageTransitionEvent) => {
      if (e.persisted) rejoin();
    };
    window.addEventListener("popstate", onPopState);
    window.addEventListener("pageshow", onPageShow);
    return () => {
      window.removeEventListener("popstate", onPopState);
      window.removeEventListener("pageshow", onPageShow);
    };
  }, [maxLength, rejoin]);

  useEffect(() => {
    // Keep the layout within what is visible above an on-screen keyboard
    // (iOS shrinks only the visual viewport; dvh alone does not follow it).
    const vv = window.visualViewport;
    if (!vv) return;
    const root = document.documentElement;
    const fit = () => root.style.setProperty("--visible-height", `${Math.round(vv.height)}px`);
    fit();
    vv.addEventListener("resize", fit);
    return () => {
      vv.removeEventListener("resize", fit);
      root.style.removeProperty("--visible-height");
    };
  }, []);

  return (
    <div className={active ? "app app-in-room" : "app"}>
      <header className="app-header">
        <h1>mcp-tornado chat</h1>
        <p className="tagline">Peer-to-peer chat over a WebRTC DataChannel</p>
      </header>
      <main>
        {active ? (
          <ChatRoom
            key={active.key}
            room={active.room}
            token={active.token}
            onLeave={leave}
            onRejoin={rejoin}
            onRefused={refused}
          />
        ) : (
          <JoinForm initialRoom={lastRoom} error={notice} maxLength={maxLength} onJoin={join} />
        )}
      </main>
    </div>
  );
}
