import { configuredIceServers } from "./config";
import {
  SignalingClient,
  signalUrl,
  type PeerConnectionLike,
  type SocketLike,
} from "./signaling";

/** Wire the framework-free client to the real browser APIs. */
export function createBrowserClient(room: string): SignalingClient {
  return new SignalingClient({
    url: signalUrl(window.location, room),
    room,
    iceServers: configuredIceServers(),
    createSocket: (url) => new WebSocket(url) as unknown as SocketLike,
    createPeerConnection: (config) => new RTCPeerConnection(config) as unknown as PeerConnectionLike,
    // Add ?debug to the page URL to log signaling to the console.
    log: new URLSearchParams(window.location.search).has("debug")
      ? (...args: unknown[]) => console.debug("[mcp]", ...args)
      : undefined,
  });
}

/** Read ?room= from the page URL. */
export function roomFromLocation(): string | null {
  return new URLSearchParams(window.location.search).get("room");
}

/** Reflect the current room in the address bar (shareable link), or clear it. */
export function setRoomInLocation(room: string | null): void {
  const url = new URL(window.location.href);
  if (room === null) url.searchParams.delete("room");
  else url.searchParams.set("room", room);
  window.history.replaceState(null, "", url);
}
