import { useCallback, useState } from "react";
import { ChatRoom } from "./ChatRoom";
import { JoinForm } from "./JoinForm";
import { roomFromLocation, setRoomInLocation } from "./browser";
import { normaliseRoom } from "./signaling";

interface Active {
  room: string;
  /** Bumped on every join so re-joining the same room makes a fresh client. */
  key: number;
}

export function App() {
  const [initialRoom] = useState(() => normaliseRoom(roomFromLocation()));
  const [active, setActive] = useState<Active | null>(() =>
    initialRoom ? { room: initialRoom, key: 1 } : null,
  );
  const [lastRoom, setLastRoom] = useState(initialRoom ?? "");
  const [notice, setNotice] = useState<string | null>(null);

  const join = useCallback((room: string) => {
    setNotice(null);
    setLastRoom(room);
    setRoomInLocation(room);
    setActive((prev) => ({ room, key: (prev?.key ?? 0) + 1 }));
  }, []);

  const leave = useCallback(() => {
    setRoomInLocation(null);
    setActive(null);
  }, []);

  const roomFull = useCallback((room: string, message: string) => {
    setRoomInLocation(null);
    setNotice(`${message}: “${room}” already has two people. Pick another room.`);
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
          <ChatRoom key={active.key} room={active.room} onLeave={leave} onRoomFull={roomFull} />
        ) : (
          <JoinForm initialRoom={lastRoom} error={notice} onJoin={join} />
        )}
      </main>
    </div>
  );
}
