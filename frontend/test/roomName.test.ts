import { describe, expect, it } from "vitest";
import { countCharacters, roomNameProblem, validRoom } from "../src/roomName";

describe("room names, counted as the server counts (code points)", () => {
  it("counts an emoji once", () => {
    expect(countCharacters("🎉")).toBe(1);
    expect("🎉".length).toBe(2); // what the old maxLength counted
    expect(countCharacters("naïve")).toBe(5);
  });

  it("accepts 64 emoji and refuses 65 with a message, without cutting", () => {
    expect(roomNameProblem("🎉".repeat(64))).toBeNull();
    expect(roomNameProblem("🎉".repeat(65))).toBe("Too long: 65 characters, the most is 64.");
    expect(roomNameProblem("a".repeat(10), 9)).toBe("Too long: 10 characters, the most is 9.");
  });

  it("trims, and refuses empty names and invisible or control characters", () => {
    expect(validRoom("  team room ")).toBe("team room");
    expect(roomNameProblem("   ")).toBe("Enter a room name.");
    expect(roomNameProblem("a\u200db")).toContain("U+200D");
    expect(roomNameProblem("a\u202eb")).toContain("U+202E");
    expect(roomNameProblem("a\tb")).toContain("U+0009");
    expect(roomNameProblem("a\ud800b")).toContain("U+D800");
    expect(validRoom(null)).toBeNull();
  });

  it("accepts letters, marks, digits, punctuation and symbols of any script", () => {
    for (const ok of ["lobby", "équipe 42", "日本語", "עברית", "a-b_c.d", "x+y=z", "👩‍💻".replace("\u200d", "")]) {
      expect(roomNameProblem(ok)).toBeNull();
    }
  });
});
