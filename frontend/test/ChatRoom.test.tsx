// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { App } from "../src/App";
import { CHAT_PROTOCOL } from "../src/chat";
import { noteForTransition } from "../src/ChatRoom";
import { FakeChannel, FakePeerConnection, FakeSocket } from "./fakes";

let sockets: FakeSocket[] = [];

class StubWebSocket extends FakeSocket {
  constructor(url: string) {
    super(url);
    sockets.push(this);
  }
}

const latest = () => sockets[sockets.length - 1]!;
const env = (o: Record<string, unknown>) => JSON.stringify({ mcp: "chat", ...o });

async function flush(): Promise<void> {
  await act(async () => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  });
}

/** Join `room` from the link and get a chat channel from the peer (we answer). */
async function connected(protocol = CHAT_PROTOCOL): Promise<FakeChannel> {
  window.history.replaceState(null, "", "/?room=lobby");
  render(<App />);
  await flush();
  act(() => {
    latest().open();
    latest().receive({ type: "joined", room: "lobby", peers: 1, initiator: false });
    latest().receive({ type: "peer-joined", room: "lobby", peers: 2 });
    latest().receive({ type: "offer", sdp: "v=0 offer" });
  });
  await flush();
  const pc = FakePeerConnection.created.at(-1)!;
  let ch: FakeChannel | null = null;
  act(() => {
    ch = pc.remoteOpensChannel("chat", protocol);
    ch.fireOpen();
  });
  await flush();
  return ch!;
}

const box = () => screen.getByLabelText("Message") as HTMLTextAreaElement;
const log = () => screen.getByRole("log", { name: "Chat messages" });

beforeEach(() => {
  sockets = [];
  FakePeerConnection.created = [];
  vi.stubGlobal("WebSocket", StubWebSocket);
  vi.stubGlobal("RTCPeerConnection", FakePeerConnection);
  window.history.replaceState(null, "", "/");
  document.title = "mcp-tornado chat";
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("ChatRoom", () => {
  it("Enter sends, Shift+Enter is a new line; delivery goes sent → delivered on the ack", async () => {
    const ch = await connected();
    expect(JSON.parse(ch.sent[0]!)).toEqual({ mcp: "chat", type: "hello", v: 1 });
    expect(box().tagName).toBe("TEXTAREA");
    expect(document.activeElement).toBe(box());
    fireEvent.change(box(), { target: { value: "line one\nline two" } });
    fireEvent.keyDown(box(), { key: "Enter", shiftKey: true });
    expect(box().value).toBe("line one\nline two");
    fireEvent.keyDown(box(), { key: "Enter" });
    await flush();
    expect(box().value).toBe("");
    const sent = ch.sent.map((s) => JSON.parse(s) as Record<string, unknown>).find((m) => m.type === "msg")!;
    expect(sent.text).toBe("line one\nline two");
    const item = log().querySelector('li[data-from="me"]')!;
    expect(item.getAttribute("data-delivery")).toBe("sent");
    expect(item.querySelector("time")?.getAttribute("datetime")).toMatch(/^\d{4}-\d\d-\d\dT/);
    act(() => ch.fireMessage(env({ type: "ack", id: sent.id })));
    expect(item.getAttribute("data-delivery")).toBe("delivered");
    expect(within(item as HTMLElement).getByText("Delivered")).toBeTruthy();
  });

  it("renders peer text as text with dir=auto and only http(s) links, opened safely", async () => {
    const ch = await connected();
    const hostile = '<img src=x onerror="window.pwned=1"> javascript:alert(1) https://example.org/a';
    act(() => ch.fireMessage(env({ type: "msg", id: "m1", text: hostile })));
    const item = log().querySelector('li[data-from="peer"]')!;
    expect(item.querySelector("img")).toBeNull();
    const text = item.querySelector(".text")!;
    expect(text.getAttribute("dir")).toBe("auto");
    expect(text.textContent).toBe(hostile);
    const anchors = item.querySelectorAll("a");
    expect(anchors).toHaveLength(1);
    expect(anchors[0]!.getAttribute("href")).toBe("https://example.org/a");
    expect(anchors[0]!.getAttribute("rel")).toBe("noopener noreferrer");
    expect(anchors[0]!.getAttribute("target")).toBe("_blank");
    expect(ch.sent.map((s) => JSON.parse(s) as Record<string, unknown>)).toContainEqual({
      mcp: "chat",
      type: "ack",
      id: "m1",
    });
  });

  it("shows the peer typing, and hides it when the message comes", async () => {
    const ch = await connected();
    const typing = screen.getByTestId("typing");
    expect(typing.textContent).toBe("");
    act(() => ch.fireMessage(env({ type: "typing", on: true })));
    expect(typing.textContent).toBe("Peer is typing…");
    expect(typing.getAttribute("aria-live")).toBeNull();
    act(() => ch.fireMessage(env({ type: "msg", id: "m", text: "hi" })));
    expect(typing.textContent).toBe("");
  });

  it("chats on while the server is away: route badge, Retry now, one note, one status line", async () => {
    window.history.replaceState(null, "", "/?room=lobby");
    render(<App />);
    await flush();
    act(() => {
      latest().open();
      latest().receive({ type: "joined", room: "lobby", peers: 1, initiator: false });
      latest().receive({ type: "peer-joined", room: "lobby", peers: 2 });
      latest().receive({ type: "offer", sdp: "v=0 offer" });
    });
    await flush();
    const pc = FakePeerConnection.created.at(-1)!;
    pc.selectedTypes = ["host", "relay"];
    let ch: FakeChannel | null = null;
    act(() => {
      pc.setConnectionState("connected");
      ch = pc.remoteOpensChannel("chat", CHAT_PROTOCOL);
      ch.fireOpen();
    });
    await flush();
    expect(screen.getByText("Via relay server")).toBeTruthy();
    expect(screen.queryByRole("button", { name: "Retry now" })).toBeNull();

    act(() => latest().serverClose(1006));
    await flush();
    const status = screen.getByRole("status");
    expect(status.getAttribute("data-status")).toBe("server-reconnecting");
    expect(status.textContent).toBe("Connected — server connection lost, reconnecting…");
    expect(screen.getAllByRole("status")).toHaveLength(1);
    expect(screen.getByRole("button", { name: "Retry now" })).toBeTruthy();
    expect(screen.getByText("Via relay server")).toBeTruthy();
    // The DataChannel needs no server: sending still works.
    fireEvent.change(box(), { target: { value: "still here" } });
    fireEvent.keyDown(box(), { key: "Enter" });
    await flush();
    const sent = ch!.sent.map((raw) => JSON.parse(raw) as Record<string, unknown>);
    expect(sent.some((m) => m.type === "msg" && m.text === "still here")).toBe(true);
    const notes = [...log().querySelectorAll('li[data-from="system"]')].map((li) => li.textContent);
    expect(notes).toEqual(["Connected to peer", "Connection to the server lost"]);
  });

  it("a failed message has a Retry button that resends it", async () => {
    const ch = await connected();
    fireEvent.change(box(), { target: { value: "lost?" } });
    fireEvent.keyDown(box(), { key: "Enter" });
    await flush();
    // The channel drops under the message (the peer is still in the room).
    act(() => ch.fireClose());
    await flush();
    const item = log().querySelector('li[data-from="me"]')!;
    expect(item.getAttribute("data-delivery")).toBe("failed");
    const retry = within(item as HTMLElement).getByRole("button", { name: "Retry" }) as HTMLButtonElement;
    expect(retry.disabled).toBe(true);
    // The peer (the initiator) repairs the chat on a new connection: Retry sends the same id again.
    act(() => latest().receive({ type: "offer", sdp: "v=0 offer on a new connection" }));
    await flush();
    const pc = FakePeerConnection.created.at(-1)!;
    expect(pc.channels).toHaveLength(0);
    act(() => {
      const again = pc.remoteOpensChannel("chat", CHAT_PROTOCOL);
      again.fireOpen();
    });
    await flush();
    fireEvent.click(within(item as HTMLElement).getByRole("button", { name: "Retry" }));
    await flush();
    const again = pc.channels.at(-1)!;
    const resent = again.sent.map((s) => JSON.parse(s) as Record<string, unknown>).find((m) => m.type === "msg");
    expect(resent?.text).toBe("lost?");
    expect(item.getAttribute("data-delivery")).toBe("sent");
  });

  it("talks plain text to a peer that did not announce the protocol", async () => {
    const ch = await connected("");
    expect(ch.sent).toEqual([]);
    fireEvent.change(box(), { target: { value: "hello bot" } });
    fireEvent.keyDown(box(), { key: "Enter" });
    await flush();
    expect(ch.sent).toEqual(["hello bot"]);
    act(() => ch.fireMessage("echo: hello bot"));
    expect(log().querySelector('li[data-from="peer"] .text')!.textContent).toBe("echo: hello bot");
  });

  it("keeps focus and the draft in the message box when the peer leaves mid-sentence", async () => {
    await connected();
    box().focus();
    fireEvent.change(box(), { target: { value: "half a thou" } });
    act(() => latest().receive({ type: "peer-left", room: "lobby", peers: 1 }));
    await flush();
    expect(screen.getByRole("status").textContent).toContain("Peer left");
    expect(document.activeElement).toBe(box());
    expect(box().value).toBe("half a thou");
    expect((screen.getByRole("button", { name: "Send" }) as HTMLButtonElement).disabled).toBe(true);
    // One live region says it; the log's copy is hidden from screen readers.
    const note = log().querySelector('li[data-from="system"]:last-child')!;
    expect(note.textContent).toBe("Peer left the room");
    expect(note.getAttribute("aria-hidden")).toBe("true");
    expect(screen.getAllByRole("status")).toHaveLength(1);
  });

  it("does not pull focus from where the user put it when the connection changes", async () => {
    await connected();
    const copy = screen.getByRole("button", { name: "Copy invite link" });
    copy.focus();
    act(() => latest().receive({ type: "peer-left", room: "lobby", peers: 1 }));
    await flush();
    expect(document.activeElement).toBe(copy);
  });

  it("counts unread messages in the tab title while hidden", async () => {
    const ch = await connected();
    let state: DocumentVisibilityState = "hidden";
    vi.spyOn(document, "visibilityState", "get").mockImplementation(() => state);
    act(() => {
      ch.fireMessage(env({ type: "msg", id: "a", text: "one" }));
      ch.fireMessage(env({ type: "msg", id: "b", text: "two" }));
    });
    await flush();
    expect(document.title).toBe("(2) mcp-tornado chat");
    state = "visible";
    act(() => {
      document.dispatchEvent(new Event("visibilitychange"));
    });
    expect(document.title).toBe("mcp-tornado chat");
  });

  it("copies the invite link and confirms it in a polite live region", async () => {
    await connected();
    const writeText = vi.fn(async () => undefined);
    vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText } });
    vi.stubGlobal("isSecureContext", true);
    fireEvent.click(screen.getByRole("button", { name: "Copy invite link" }));
    await flush();
    expect(writeText).toHaveBeenCalledWith(window.location.href);
    const copied = screen.getByTestId("copied");
    expect(copied.getAttribute("aria-live")).toBe("polite");
    expect(copied.textContent).toBe("Invite link copied");
  });

  it("falls back to the copy command without the Clipboard API", async () => {
    await connected();
    vi.stubGlobal("navigator", { ...navigator, clipboard: undefined });
    const exec = vi.fn(() => true);
    document.execCommand = exec;
    const button = screen.getByRole("button", { name: "Copy invite link" });
    button.focus();
    fireEvent.click(button);
    await flush();
    expect(exec).toHaveBeenCalledWith("copy");
    expect(screen.getByTestId("copied").textContent).toBe("Invite link copied");
    expect(document.activeElement).toBe(button); // focus comes back from the helper textarea
  });
});

describe("App navigation and refusals", () => {
  it("joining adds a history entry; Back returns to the form and leaves; Forward rejoins", async () => {
    render(<App />);
    const before = window.history.length;
    fireEvent.change(screen.getByLabelText("Room name"), { target: { value: "lobby" } });
    fireEvent.submit(screen.getByLabelText("Room name").closest("form")!);
    await flush();
    expect(window.history.length).toBe(before + 1);
    const ws = latest();
    act(() => ws.open());
    window.history.back();
    await new Promise((r) => setTimeout(r, 50));
    await flush();
    expect(screen.getByLabelText("Room name")).toBeTruthy();
    expect(ws.closedWith?.code).toBe(1000);
    window.history.forward();
    await new Promise((r) => setTimeout(r, 50));
    await flush();
    expect(screen.getByTestId("room-name").textContent).toBe("lobby");
    expect(latest()).not.toBe(ws);
  });

  it("a Disconnected room offers Rejoin (after pagehide, e.g. back/forward)", async () => {
    window.history.replaceState(null, "", "/?room=lobby");
    render(<App />);
    await flush();
    act(() => window.dispatchEvent(new Event("pagehide")));
    await flush();
    expect(screen.getByRole("status").textContent).toBe("Disconnected");
    const count = sockets.length;
    fireEvent.click(screen.getByRole("button", { name: "Rejoin" }));
    await flush();
    expect(sockets).toHaveLength(count + 1);
    expect(screen.getByRole("status").textContent).toContain("Connecting");
  });

  it("a rate-limit refusal says so instead of 'pick another room'", async () => {
    window.history.replaceState(null, "", "/?room=lobby");
    render(<App />);
    await flush();
    act(() => {
      latest().open();
      latest().receive({ type: "error", code: "rate_limited", message: "Too many messages; slow down" });
      latest().serverClose(4429);
    });
    await flush();
    const alert = screen.getByTestId("join-error").textContent ?? "";
    expect(alert).toContain("rate limit");
    expect(alert).not.toContain("another room");
    expect((screen.getByLabelText("Room name") as HTMLInputElement).value).toBe("lobby");
  });

  it("counts room-name characters like the server and says when it is too long, never cutting", async () => {
    render(<App />);
    const input = screen.getByLabelText("Room name") as HTMLInputElement;
    expect(input.maxLength).toBe(-1);
    fireEvent.change(input, { target: { value: "🎉".repeat(64) } });
    expect(screen.getByTestId("room-count").textContent).toBe("64 of 64 characters");
    expect(input.getAttribute("aria-invalid")).toBe("false");
    fireEvent.change(input, { target: { value: "🎉".repeat(65) } });
    expect(input.value).toBe("🎉".repeat(65));
    expect(input.getAttribute("aria-invalid")).toBe("true");
    expect(screen.getByTestId("room-hint").textContent).toBe("Too long: 65 characters, the most is 64.");
    fireEvent.submit(input.closest("form")!);
    await flush();
    expect(sockets).toHaveLength(0);
    fireEvent.change(input, { target: { value: "🎉".repeat(64) } });
    fireEvent.submit(input.closest("form")!);
    await flush();
    expect(latest().url).toContain(`room=${encodeURIComponent("🎉".repeat(64))}`);
  });
});

describe("noteForTransition", () => {
  it("notes connection changes once, only when they concern the chat", () => {
    expect(noteForTransition("peer-connecting", "connected")).toBe("Connected to peer");
    expect(noteForTransition("connected", "connected")).toBeNull();
    expect(noteForTransition("connected", "peer-left")).toBe("Peer left the room");
    expect(noteForTransition("waiting", "peer-left")).toBeNull();
    expect(noteForTransition("connected", "reconnecting")).toBe("Connection to the server lost");
    expect(noteForTransition("waiting", "reconnecting")).toBeNull();
    // Recovery: the chat going on through a repair is no news; losing the server is, once.
    expect(noteForTransition("connected", "ice-restarting")).toBeNull();
    expect(noteForTransition("ice-restarting", "connected")).toBeNull();
    expect(noteForTransition("peer-reconnecting", "connected")).toBeNull();
    expect(noteForTransition("connected", "server-reconnecting")).toBe("Connection to the server lost");
    expect(noteForTransition("server-reconnecting", "connected")).toBeNull();
    expect(noteForTransition("server-reconnecting", "reconnecting")).toBeNull();
    expect(noteForTransition("ice-restarting", "peer-left")).toBe("Peer left the room");
    expect(noteForTransition("peer-reconnecting", "peer-left")).toBe("Peer left the room");
    expect(noteForTransition("reconnecting", "connected")).toBe("Connected to peer");
  });
});
