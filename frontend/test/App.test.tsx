// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { App } from "../src/App";
import { FakeSocket } from "./fakes";

let sockets: FakeSocket[] = [];

class StubWebSocket extends FakeSocket {
  constructor(url: string) {
    super(url);
    sockets.push(this);
  }
}

const latest = () => sockets[sockets.length - 1]!;

async function flush(): Promise<void> {
  await act(async () => {
    for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
  });
}

beforeEach(() => {
  sockets = [];
  vi.stubGlobal("WebSocket", StubWebSocket);
  vi.stubGlobal(
    "RTCPeerConnection",
    class {
      constructor() {
        throw new Error("no WebRTC in this test");
      }
    },
  );
  window.history.replaceState(null, "", "/");
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("App", () => {
  it("shows a labelled room form and joins on Enter, deriving the socket URL from the page", async () => {
    render(<App />);
    const input = screen.getByLabelText("Room name");
    expect(document.activeElement).toBe(input);
    fireEvent.change(input, { target: { value: "  team room " } });
    fireEvent.submit(input.closest("form")!);
    await flush();
    expect(latest().url).toBe(`ws://${window.location.host}/ws/signal/?room=team%20room&resumable=1`);
    expect(screen.getByTestId("room-name").textContent).toBe("team room");
    expect(screen.getByRole("status").textContent).toContain("Connecting");
    expect(window.location.search).toBe("?room=team+room");
    // The message box takes focus at once (it stays usable; Send waits for the peer).
    expect(document.activeElement).toBe(screen.getByLabelText("Message"));
    expect((screen.getByRole("button", { name: "Send" }) as HTMLButtonElement).disabled).toBe(true);
  });

  it("rejects an empty room name", () => {
    render(<App />);
    fireEvent.submit(screen.getByLabelText("Room name").closest("form")!);
    expect(screen.getByLabelText("Room name").getAttribute("aria-invalid")).toBe("true");
    expect(sockets).toHaveLength(0);
  });

  it("auto-joins the room from ?room= and shows live status", async () => {
    window.history.replaceState(null, "", "/?room=lobby");
    render(<App />);
    await flush();
    expect(latest().url).toBe(`ws://${window.location.host}/ws/signal/?room=lobby&resumable=1`);
    act(() => {
      latest().open();
      latest().receive({ type: "joined", room: "lobby", peers: 1, initiator: false });
    });
    await flush();
    expect(screen.getByRole("status").textContent).toContain("Waiting for a peer");
    expect(screen.getByRole("status").getAttribute("aria-live")).toBe("polite");
    act(() => latest().receive({ type: "peer-joined", room: "lobby", peers: 2 }));
    await flush();
    expect(screen.getByRole("status").textContent).toContain("Connecting to peer");
  });

  it("room full: error shown, no chat UI, another room can be picked", async () => {
    window.history.replaceState(null, "", "/?room=busy");
    render(<App />);
    await flush();
    act(() => {
      latest().open();
      latest().receive({ type: "error", code: "room_full", message: "Room is full" });
      latest().serverClose(4409);
    });
    await flush();
    expect(screen.getByRole("alert").textContent).toContain("Room is full");
    expect(screen.queryByRole("log")).toBeNull();
    expect(screen.queryByLabelText("Message")).toBeNull();
    const input = screen.getByLabelText("Room name") as HTMLInputElement;
    expect(input.value).toBe("busy");
    expect(document.activeElement).toBe(input);
    expect(window.location.search).toBe("");
    const count = sockets.length;
    fireEvent.change(input, { target: { value: "quiet" } });
    fireEvent.submit(input.closest("form")!);
    await flush();
    expect(sockets).toHaveLength(count + 1);
    expect(latest().url).toContain("room=quiet");
  });

  it("shows reconnecting with a Retry now button when the socket drops", async () => {
    window.history.replaceState(null, "", "/?room=lobby");
    render(<App />);
    await flush();
    act(() => {
      latest().open();
      latest().receive({ type: "joined", room: "lobby", peers: 1, initiator: false });
    });
    await flush();
    act(() => latest().serverClose(1006));
    await flush();
    expect(screen.getByRole("status").textContent).toContain("reconnecting");
    const count = sockets.length;
    fireEvent.click(screen.getByRole("button", { name: "Retry now" }));
    await flush();
    expect(sockets).toHaveLength(count + 1);
    act(() => {
      latest().open();
      latest().receive({ type: "joined", room: "lobby", peers: 1, initiator: false });
    });
    await flush();
    expect(screen.getByRole("status").textContent).toContain("Waiting for a peer");
    expect(screen.queryByRole("button", { name: "Retry now" })).toBeNull();
  });

  it("passes the link's room token to the socket, and drops it for another room", async () => {
    window.history.replaceState(null, "", "/?room=lobby&token=v1.abc.def");
    render(<App />);
    await flush();
    expect(latest().url).toBe(`ws://${window.location.host}/ws/signal/?room=lobby&token=v1.abc.def&resumable=1`);
    act(() => {
      latest().open();
      latest().receive({ type: "error", code: "token_expired", message: "Room token expired" });
      latest().serverClose(4401);
    });
    await flush();
    expect(screen.getByRole("alert").textContent).toContain("Room token expired");
    expect(window.location.search).toBe("");
    const input = screen.getByLabelText("Room name");
    fireEvent.change(input, { target: { value: "elsewhere" } });
    fireEvent.submit(input.closest("form")!);
    await flush();
    expect(latest().url).toBe(`ws://${window.location.host}/ws/signal/?room=elsewhere&resumable=1`);
  });

  it("an invalid room in the link is not joined", async () => {
    window.history.replaceState(null, "", "/?room=%20%20");
    render(<App />);
    await flush();
    expect(sockets).toHaveLength(0);
    expect(screen.getByRole("alert").textContent).toContain("not valid");
  });

  it("Leave closes the socket cleanly and returns to the form", async () => {
    window.history.replaceState(null, "", "/?room=lobby");
    render(<App />);
    await flush();
    const ws = latest();
    act(() => {
      ws.open();
      ws.receive({ type: "joined", room: "lobby", peers: 1, initiator: false });
    });
    await flush();
    fireEvent.click(screen.getByRole("button", { name: "Leave" }));
    await flush();
    expect(ws.sentOfType("leave")).toHaveLength(1);
    expect(ws.closedWith?.code).toBe(1000);
    expect(screen.getByLabelText("Room name")).toBeTruthy();
    expect(window.location.search).toBe("");
  });
});
