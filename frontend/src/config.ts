import { DEFAULT_MAX_ROOM_LENGTH } from "./roomName";
import type { IceServer } from "./signalingSocket";

/**
 * ICE servers for RTCPeerConnection. Empty by default (host candidates only,
 * which is enough on a LAN / loopback). Configure at build time with
 *   VITE_ICE_SERVERS='[{"urls":"stun:stun.example.org:3478"}]' npm run build
 * or at run time by defining `window.MCP_TORNADO_CONFIG = {iceServers: [...]}`
 * in a script loaded before the app.
 */
export function parseIceServers(raw: unknown): IceServer[] {
  let value: unknown = raw;
  if (typeof raw === "string") {
    if (raw.trim() === "") return [];
    try {
      value = JSON.parse(raw);
    } catch {
      console.warn("mcp-tornado: ignoring invalid ICE server JSON");
      return [];
    }
  }
  if (!Array.isArray(value)) return [];
  return value.filter((s): s is IceServer => {
    if (typeof s !== "object" || s === null) return false;
    const urls = (s as { urls?: unknown }).urls;
    return typeof urls === "string" || (Array.isArray(urls) && urls.every((u) => typeof u === "string"));
  });
}

declare global {
  interface Window {
    MCP_TORNADO_CONFIG?: { iceServers?: unknown; connectTimeoutMs?: unknown; maxRoomLength?: unknown };
  }
}

export function configuredIceServers(): IceServer[] {
  const runtime = typeof window !== "undefined" ? window.MCP_TORNADO_CONFIG?.iceServers : undefined;
  if (runtime !== undefined) return parseIceServers(runtime);
  return parseIceServers(import.meta.env.VITE_ICE_SERVERS as string | undefined);
}

/**
 * How long a peer connection may take to come up before the client retries it
 * and tells the user what may be wrong (default 15 s). Set at run time with
 * `window.MCP_TORNADO_CONFIG = {connectTimeoutMs: 20000}`.
 */
export function configuredConnectTimeoutMs(): number | undefined {
  const raw = typeof window !== "undefined" ? window.MCP_TORNADO_CONFIG?.connectTimeoutMs : undefined;
  return typeof raw === "number" && Number.isFinite(raw) && raw > 0 ? raw : undefined;
}

/**
 * The longest room name the server accepts: its --max-room-length (64 by
 * default). A server started with another value tells the client with
 * `window.MCP_TORNADO_CONFIG = {maxRoomLength: N}` (or VITE_MAX_ROOM_LENGTH at
 * build time); the server still checks, and its refusal is shown.
 */
export function configuredMaxRoomLength(): number {
  const runtime = typeof window !== "undefined" ? window.MCP_TORNADO_CONFIG?.maxRoomLength : undefined;
  const raw = runtime ?? (import.meta.env.VITE_MAX_ROOM_LENGTH as string | undefined);
  const n = typeof raw === "number" ? raw : typeof raw === "string" ? Number(raw) : NaN;
  return Number.isInteger(n) && n >= 1 ? n : DEFAULT_MAX_ROOM_LENGTH;
}
