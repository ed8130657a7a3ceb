// @vitest-environment jsdom
import { act, cleanup, fireEvent, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { FakeWebSocket, fakeBus, json, KEY, openSignedIn } from "@/test/harness";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
  window.sessionStorage.clear();
});

function setup(path = "/ui/sandboxes/sb-1/logs") {
  fakeBus(() => json(404, { error: { code: "not_found", message: "no", details: {} } }));
  openSignedIn(path);
}

/** The newest socket to the logs of a sandbox. */
async function logSocket(count = 1) {
  await vi.waitFor(() => expect(FakeWebSocket.instances.filter((w) => w.url.includes("/logs")).length).toBe(count));
  return FakeWebSocket.instances.filter((w) => w.url.includes("/logs")).at(-1)!;
}

function send(ws: FakeWebSocket, frame: Record<string, unknown>) {
  ws.onmessage?.({ data: JSON.stringify(frame) });
}

function lines(ws: FakeWebSocket, ...texts: string[]) {
  act(() => {
    for (const line of texts) send(ws, { type: "log", line });
  });
}

const shown = () => (screen.getByRole("log", { name: "Container output" }).textContent ?? "");

/** Give the log box a size and a scroll position (jsdom lays nothing out). */
function scrollTo(box: HTMLElement, top: number, height = 1000, client = 200) {
  Object.defineProperty(box, "scrollHeight", { configurable: true, value: height });
  Object.defineProperty(box, "clientHeight", { configurable: true, value: client });
  box.scrollTop = top;
  fireEvent.scroll(box);
}

describe("container logs", () => {
  it("follows the socket, authenticating with the first frame, and holds new lines while paused", async () => {
    setup("/ui/sandboxes/sb-1/logs?tail=500");
    expect(await screen.findByRole("heading", { level: 1, name: "Logs of sb-1" })).toBeTruthy();
    const ws = await logSocket();
    expect(ws.url).toBe(`ws://${window.location.host}/ws/sandboxes/sb-1/logs?tail=500`);
    expect(ws.url).not.toContain(KEY);
    act(() => ws.welcome());
    expect(JSON.parse(ws.sent[0]!)).toEqual({ type: "auth", token: KEY });
    lines(ws, "tick 1", "tick 2");
    await vi.waitFor(() => expect(shown()).toBe("tick 1tick 2"));

    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Pause" }));
    lines(ws, "tick 3", "tick 4", "tick 5");
    await vi.waitFor(() => expect(screen.getByTestId("log-follow-state").textContent).toMatch(/3 new lines held/));
    expect(shown()).toBe("tick 1tick 2");
    expect(screen.getByRole("button", { name: "3 new lines — resume" })).toBeTruthy();
    await user.click(screen.getByRole("button", { name: "Follow" }));
    expect(shown()).toBe("tick 1tick 2tick 3tick 4tick 5");
    expect(screen.getByRole("button", { name: "Pause" })).toBeTruthy();
  });

  it("pauses while the reader scrolls up, without moving, and resumes at the end", async () => {
    setup();
    const ws = await logSocket();
    act(() => ws.welcome());
    lines(ws, "a", "b");
    await vi.waitFor(() => expect(shown()).toBe("ab"));
    const box = screen.getByRole("log", { name: "Container output" });
    scrollTo(box, 300);
    expect(screen.getByTestId("log-follow-state").getAttribute("data-paused")).toBe("true");
    lines(ws, "c");
    await vi.waitFor(() => expect(screen.getByRole("button", { name: "1 new line — resume" })).toBeTruthy());
    // nothing moved: the box was not scrolled back to the end
    expect(box.scrollTop).toBe(300);
    expect(shown()).toBe("ab");
    scrollTo(box, 800);
    expect(shown()).toBe("abc");
    expect(screen.getByTestId("log-follow-state").getAttribute("data-paused")).toBe("false");
  });

  it("says the container stopped and follows again on request", async () => {
    setup();
    const ws = await logSocket();
    act(() => ws.welcome());
    lines(ws, "bye");
    act(() => {
      send(ws, { type: "end", reason: "the container stopped" });
      ws.onclose?.({ code: 1000, reason: "end of logs" });
    });
    expect((await screen.findByTestId("log-ended")).textContent).toMatch(/the container stopped/);
    expect(shown()).toBe("bye");
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Follow again" }));
    const again = await logSocket(2);
    expect(again.url).toMatch(/\/ws\/sandboxes\/sb-1\/logs\?tail=100$/);
    expect(screen.queryByTestId("log-ended")).toBeNull();
  });

  it("shows the bus's refusal for a sandbox without a container", async () => {
    setup();
    const ws = await logSocket();
    act(() => {
      ws.onopen?.();
      send(ws, { type: "error", code: "no_container", message: "sandbox 'sb-1' has no container yet (state creating)", details: { sandbox_id: "sb-1", state: "creating" } });
      ws.onclose?.({ code: 1008, reason: "no_container" });
    });
    expect((await screen.findByRole("alert")).textContent).toMatch(/has no container yet \(state creating\) \(no_container, HTTP 409\)/);
    expect(screen.getByRole("button", { name: "Try again" })).toBeTruthy();
  });

  it("downloads the lines received as a text file from a Blob URL, asking the bus nothing", async () => {
    const created: Blob[] = [];
    const createObjectURL = vi.fn((blob: Blob) => {
      created.push(blob);
      return "blob:logs";
    });
    // jsdom has no Blob URLs: give it some for this test.
    Object.assign(URL, { createObjectURL, revokeObjectURL: vi.fn() });
    onTestFinished(() => {
      delete (URL as { createObjectURL?: unknown }).createObjectURL;
      delete (URL as { revokeObjectURL?: unknown }).revokeObjectURL;
    });
    const clicks: string[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      clicks.push(`${this.download} ${this.href}`);
    });
    setup();
    const ws = await logSocket();
    act(() => ws.welcome());
    lines(ws, "tick 1", "tick 2");
    await vi.waitFor(() => expect(shown()).toBe("tick 1tick 2"));
    const fetches = (globalThis.fetch as unknown as { mock: { calls: unknown[] } }).mock.calls.length;
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Download" }));
    const text = await new Promise<string>((resolve) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result as string);
      reader.readAsText(created[0]!);
    });
    expect(text).toBe("tick 1\ntick 2\n");
    expect(created[0]!.type).toBe("text/plain;charset=utf-8");
    expect(clicks[0]).toMatch(/^sb-1-logs-.*\.txt blob:logs$/);
    expect((globalThis.fetch as unknown as { mock: { calls: unknown[] } }).mock.calls.length).toBe(fetches);
  });

  it("keeps the last 5000 lines and says how many were dropped", async () => {
    setup();
    const ws = await logSocket();
    act(() => ws.welcome());
    lines(ws, ...Array.from({ length: 5003 }, (_, i) => `line ${i + 1}`));
    expect((await screen.findByTestId("log-dropped")).textContent).toMatch(/^3 earlier lines were dropped: this view keeps the last 5000/);
    const box = screen.getByRole("log", { name: "Container output" });
    expect(box.children).toHaveLength(5000);
    expect(box.firstElementChild?.textContent).toBe("line 4");
  });

  it("changes the tail in the URL and starts again from it", async () => {
    setup();
    await logSocket();
    const user = userEvent.setup();
    await user.selectOptions(screen.getByLabelText("Start with the last"), "1000");
    expect(window.location.search).toBe("?tail=1000");
    const ws = await logSocket(2);
    expect(ws.url).toMatch(/\?tail=1000$/);
  });
});
