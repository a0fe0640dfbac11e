/**
 * Room names as the server checks them (mcp_tornado/room_names.py): trimmed,
 * 1 to max characters, where a character is a Unicode code point (Python's
 * len(), so an emoji such as 🎉 counts once, not as two UTF-16 units), and
 * only letters, marks, numbers, punctuation, symbols and the plain space.
 *
 * The longest name comes from the server's --max-room-length (64 by default;
 * tell the client another value with maxRoomLength in MCP_TORNADO_CONFIG).
 */

const ROOM_CHARS = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;
export const DEFAULT_MAX_ROOM_LENGTH = 64;

/** Characters as the server counts them: Unicode code points. */
export function countCharacters(text: string): number {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

/** What is wrong with the (untrimmed) name, in words for the user, or null if it is fine. */
export function roomNameProblem(raw: string, max: number = DEFAULT_MAX_ROOM_LENGTH): string | null {
  const room = raw.trim();
  if (room === "") return "Enter a room name.";
  const length = countCharacters(room);
  if (length > max) return `Too long: ${length} characters, the most is ${max}.`;
  for (const ch of room) {
    if (!ROOM_CHARS.test(ch)) {
      const code = ch.codePointAt(0) ?? 0;
      return `Room names cannot contain U+${code.toString(16).toUpperCase().padStart(4, "0")} (only letters, digits, punctuation, symbols and spaces).`;
    }
  }
  return null;
}

/** The trimmed name if the server would accept it, else null. */
export function validRoom(raw: string | null | undefined, max: number = DEFAULT_MAX_ROOM_LENGTH): string | null {
  if (raw == null) return null;
  return roomNameProblem(raw, max) === null ? raw.trim() : null;
}
