/**
 * Split chat text into plain text and web links, for rendering as React
 * text nodes and <a> elements (never as HTML).
 *
 * Only http: and https: addresses become links: `javascript:`, `data:`,
 * `vbscript:` and every other scheme stay text. Each candidate is parsed with
 * URL and the href is the parser's normalised form, so what is shown as a
 * link is exactly what a click opens.
 */

export type Segment = { kind: "text"; text: string } | { kind: "link"; text: string; href: string };

// Scheme, then anything up to whitespace, quotes or angle brackets.
const CANDIDATE = /\bhttps?:\/\/[^\s<>"'`]+/giu;
// Punctuation that ends a sentence more often than a URL.
const TRAILING = new Set([...".,;:!?'\"»”’)]}"]);

function trimTrailing(url: string): string {
  // A loop from the end, not a regex: linear on any input.
  let end = url.length;
  while (end > 0 && TRAILING.has(url[end - 1]!)) end -= 1;
  let out = url.slice(0, end);
  // Keep a closing parenthesis that balances one inside the URL (Wikipedia links).
  let opens = 0;
  for (const ch of out) opens += ch === "(" ? 1 : ch === ")" ? -1 : 0;
  while (opens > 0 && url[out.length] === ")") {
    out += ")";
    opens -= 1;
  }
  return out;
}

/** A safe href for `text`, or null if it is not an http(s) URL with a host. */
export function safeHref(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") return null;
  return url.href;
}

export function splitLinks(text: string): Segment[] {
  const out: Segment[] = [];
  let last = 0;
  const push = (t: string) => {
    if (t === "") return;
    const prev = out[out.length - 1];
    if (prev?.kind === "text") prev.text += t;
    else out.push({ kind: "text", text: t });
  };
  for (const m of text.matchAll(CANDIDATE)) {
    const start = m.index;
    const candidate = trimTrailing(m[0]);
    const href = safeHref(candidate);
    if (href === null) continue;
    push(text.slice(last, start));
    out.push({ kind: "link", text: candidate, href });
    last = start + candidate.length;
  }
  push(text.slice(last));
  return out;
}
