import { configuredConnectTimeoutMs, configuredIceServers } from "./config";
import {
  SignalingClient,
  signalUrl,
  type ChannelListener,
  type PeerConnectionLike,
  type SocketLike,
} from "./signaling";

/** Wire the framework-free client to the real browser APIs. */
export function createBrowserClient(
  room: string,
  token: string | null,
  channel: ChannelListener,
): SignalingClient {
  return new SignalingClient({
    channel,
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
 * `push` makes a new history entry (joining or leaving a room from the page),
 * so the browser's Back button returns to the previous view, not off the app.
 */
export function setRoomInLocation(room: string | null, token: string | null = null, push = false): void {
  const url = new URL(window.location.href);
  if (room === null) url.searchParams.delete("room");
  else url.searchParams.set("room", room);
  if (room === null || token === null) url.searchParams.delete("token");
  else url.searchParams.set("token", token);
  if (push && url.href !== window.location.href) window.history.pushState(null, "", url);
  else window.history.replaceState(null, "", url);
}

/** Copy text to the clipboard: the async Clipboard API, else the legacy copy command. */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* denied or unavailable: try the fallback */
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  const previous = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  previous?.focus();
  return ok;
}
