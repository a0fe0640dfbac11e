import { useCallback, useState } from "react";
import { ChatRoom } from "./ChatRoom";
import { JoinForm } from "./JoinForm";
import { roomFromLocation, setRoomInLocation } from "./browser";
import { normaliseRoom } from "./signaling";

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

function readInitial(): Initial {
  const { room: raw, token } = roomFromLocation();
  const room = normaliseRoom(raw);
  return { room, token: room ? token : null, invalidRoom: raw && !room ? raw : null };
}

export function App() {
  const [initial] = useState(readInitial);
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
      setRoomInLocation(room, token);
      setActive((prev) => ({ room, token, key: (prev?.key ?? 0) + 1 }));
    },
    [initial],
  );

  const leave = useCallback(() => {
    setRoomInLocation(null);
    setActive(null);
  }, []);

  const refused = useCallback((room: string, status: "room-full" | "refused", message: string) => {
    setRoomInLocation(null);
    setNotice(
      status === "room-full"
        ? `${message}: “${room}” already has two people. Pick another room.`
        : `${message}. Pick another room, or ask for a new link.`,
    );
    setActive(null);
  }, []);

  return (
    <div className="app">
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
            onRefused={refused}
          />
        ) : (
          <JoinForm initialRoom={lastRoom} error={notice} onJoin={join} />
        )}
      </main>
    </div>
  );
}
