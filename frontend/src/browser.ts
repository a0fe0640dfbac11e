import { configuredConnectTimeoutMs, configuredIceServers } from "./config";
import {
  SignalingClient,
  signalUrl,
  type PeerConnectionLike,
  type SocketLike,
} from "./signaling";

/** Wire the framework-free client to the real browser APIs. */
export function createBrowserClient(room: string, token: string | null = null): SignalingClient {
  return new SignalingClient({
    url: signalUrl(window.location, room, token),
    room,
    iceServers: configuredIceServers(),
    connectTimeoutMs: configuredConnectTimeoutMs(),
    createSocket: (url) => new WebSocket(url) as unknown as SocketLike,
    createPeerConnection: (config) => new RTCPeerConnection(config) as unknown as PeerConnectionLike,
    // Add ?debug to the page URL to log signaling to the console.
    log: new URLSearchParams(window.location.search).has("debug")
      ? (...args: unknown[]) => console.debug("[mcp]", ...args)
      : undefined,
  });
}

/** Read ?room= (and the optional room ?token=) from the page URL. */
export function roomFromLocation(): { room: string | null; token: string | null } {
  const params = new URLSearchParams(window.location.search);
  return { room: params.get("room"), token: params.get("token") };
}

/**
 * Reflect the current room in the address bar (a shareable link), or clear it.
 * A token grants one room, so it is kept only alongside that room.
 */
export function setRoomInLocation(room: string | null, token: string | null = null): void {
  const url = new URL(window.location.href);
  if (room === null) url.searchParams.delete("room");
  else url.searchParams.set("room", room);
  if (room === null || token === null) url.searchParams.delete("token");
  else url.searchParams.set("token", token);
  window.history.replaceState(null, "", url);
}
