import { describe, expect, it } from "vitest";
import { safeHref, splitLinks } from "../src/links";

const links = (text: string) => splitLinks(text).filter((s) => s.kind === "link");

describe("splitLinks", () => {
  it("finds http and https links and keeps the rest as text", () => {
    expect(splitLinks("see https://example.org/a?b=1#c and http://x.test.")).toEqual([
      { kind: "text", text: "see " },
      { kind: "link", text: "https://example.org/a?b=1#c", href: "https://example.org/a?b=1#c" },
      { kind: "text", text: " and " },
      { kind: "link", text: "http://x.test", href: "http://x.test/" },
      { kind: "text", text: "." },
    ]);
  });

  it("keeps balanced parentheses and drops sentence punctuation", () => {
    expect(links("(https://en.wikipedia.org/wiki/Foo_(bar))")).toEqual([
      { kind: "link", text: "https://en.wikipedia.org/wiki/Foo_(bar)", href: "https://en.wikipedia.org/wiki/Foo_(bar)" },
    ]);
    expect(links("https://a.test/x, https://b.test/y!")).toHaveLength(2);
  });

  it("never links other schemes", () => {
    for (const hostile of [
      "javascript:alert(1)",
      "JaVaScRiPt:alert(document.cookie)",
      " javascript:alert(1)",
      "java\tscript:alert(1)",
      "data:text/html,<script>alert(1)</script>",
      "vbscript:msgbox(1)",
      "file:///etc/passwd",
      "http:/only-one-slash",
      "https://",
      "https:// space.test",
    ]) {
      expect(links(hostile)).toEqual([]);
      expect(splitLinks(hostile).map((s) => s.text).join("")).toBe(hostile);
    }
  });

  it("stops at quotes and angle brackets, so markup stays text", () => {
    const text = 'https://evil.test/"onmouseover="alert(1) <a href="javascript:x">https://ok.test</a>';
    const found = links(text);
    expect(found.map((l) => l.kind === "link" && l.href)).toEqual(["https://evil.test/", "https://ok.test/"]);
    expect(splitLinks(text).map((s) => s.text).join("")).toBe(text);
  });

  it("a javascript: prefix before an https URL links only the https part", () => {
    expect(links("javascript:alert(1)//https://x.test")).toEqual([
      { kind: "link", text: "https://x.test", href: "https://x.test/" },
    ]);
  });

  it("handles non-Latin hosts and text", () => {
    const found = links("مرحبا https://пример.испытание/путь שלום");
    expect(found).toHaveLength(1);
    expect(found[0]!.kind === "link" && found[0]!.href.startsWith("https://xn--")).toBe(true);
  });

  it("is linear on long hostile input", () => {
    const long = "https://a.test/" + "(".repeat(20_000) + ")".repeat(20_000) + ".)".repeat(20_000) + "x";
    const t0 = Date.now();
    expect(links(long)).toHaveLength(1);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });
});

describe("safeHref", () => {
  it("only http(s) URLs with a host", () => {
    expect(safeHref("https://a.test")).toBe("https://a.test/");
    expect(safeHref("javascript:alert(1)")).toBeNull();
    expect(safeHref("not a url")).toBeNull();
  });
});
