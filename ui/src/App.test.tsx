// @vitest-environment jsdom
import { cleanup, render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { App } from "./App";

const KEY = "cbk_test_key_0123456789";

class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  sent: string[] = [];
  constructor(readonly url: string) {
    FakeWebSocket.instances.push(this);
  }
  send(data: string) {
    this.sent.push(data);
  }
  close() {}
}

const sandbox = (id: string, status: string, workspace = "demo") => ({
  sandbox_id: id,
  workspace,
  agents: [{ name: "planner", capabilities: ["plan"], skills: [{ id: "summarize", name: "Summarize", description: "", tags: [], input_schema: null, output_schema: null }] }],
  metadata: {},
  status,
  head_seq: 0,
  settled_seq: 0,
  last_heartbeat: new Date().toISOString(),
  registered_at: new Date().toISOString(),
  managed: false,
});

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>;
let handler: Handler;
const fetchMock = vi.fn((input: RequestInfo | URL, init?: RequestInit) =>
  Promise.resolve().then(() => handler(String(input), init ?? {})),
);

function keyOf(init: RequestInit): string | undefined {
  return (init.headers as Record<string, string> | undefined)?.Authorization?.replace(/^Bearer /, "");
}

/** A bus that knows KEY and two sandboxes. */
const goodBus: Handler = (url, init) => {
  if (keyOf(init) !== KEY) return json(401, { error: { code: "unauthorized", message: "bad key", details: { reason: "invalid" } } });
  if (url.startsWith("/api/v1/sandboxes")) return json(200, { count: 2, sandboxes: [sandbox("sb-a", "online"), sandbox("sb-b", "offline", "other")] });
  return json(404, { error: { code: "not_found", message: "no", details: {} } });
};

beforeEach(() => {
  window.sessionStorage.clear();
  window.localStorage.clear();
  FakeWebSocket.instances = [];
  vi.stubGlobal("fetch", fetchMock);
  vi.stubGlobal("WebSocket", FakeWebSocket);
  fetchMock.mockClear();
  handler = goodBus;
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

function open(path: string) {
  window.history.pushState(null, "", path);
  return render(<App />);
}

async function signIn(key: string) {
  const user = userEvent.setup();
  const input = await screen.findByLabelText("API key");
  await user.clear(input);
  await user.type(input, key);
  await user.click(screen.getByRole("button", { name: "Sign in" }));
  return user;
}

describe("sign in", () => {
  it("asks for the key in a labelled password field", async () => {
    open("/ui/sandboxes");
    const input = await screen.findByLabelText("API key");
    expect(input).toHaveProperty("type", "password");
    expect(screen.getByRole("heading", { level: 1 }).textContent).toMatch(/Collaboration Bus/);
    expect(screen.getByRole("main")).toBeTruthy();
    expect(window.location.pathname).toBe("/ui/signin");
  });

  it("says the key was refused on a 401 and keeps nothing", async () => {
    open("/ui/");
    await signIn("wrong-key");
    expect((await screen.findByRole("alert")).textContent).toMatch(/key was refused \(invalid\)/);
    expect(window.sessionStorage.length).toBe(0);
    expect(window.location.pathname).toBe("/ui/signin");
  });

  it("says the bus is unreachable when there is no answer", async () => {
    handler = () => {
      throw new TypeError("Failed to fetch");
    };
    open("/ui/");
    await signIn(KEY);
    expect((await screen.findByRole("alert")).textContent).toMatch(/unreachable/);
  });

  it("keeps a good key in sessionStorage only, sends it as a header and goes back to the page asked for", async () => {
    open("/ui/sandboxes?status=online");
    await signIn(KEY);
    expect(await screen.findByRole("heading", { level: 1, name: "Sandboxes" })).toBeTruthy();
    expect(window.location.pathname + window.location.search).toBe("/ui/sandboxes?status=online");
    expect(window.sessionStorage.getItem("collab-bus.api-key")).toBe(KEY);
    expect(window.localStorage.length).toBe(0);
    for (const [url, init] of fetchMock.mock.calls) {
      expect(String(url)).not.toContain(KEY);
      expect(String(url).startsWith("/")).toBe(true);
      expect(keyOf(init ?? {})).toBe(KEY);
    }
    // the status filter from the URL applies: only the online sandbox is listed
    const table = await screen.findByRole("table");
    expect(within(table).getByRole("rowheader", { name: "sb-a" })).toBeTruthy();
    expect(within(table).queryByRole("rowheader", { name: "sb-b" })).toBeNull();
    // the events socket authenticates with its first frame, not the URL
    const ws = FakeWebSocket.instances.at(-1)!;
    expect(ws.url).toMatch(/\/ws\/events$/);
    ws.onopen?.();
    expect(JSON.parse(ws.sent[0]!)).toEqual({ type: "auth", token: KEY });
  });

  it("sends the user back to sign in when the key stops working", async () => {
    window.sessionStorage.setItem("collab-bus.api-key", KEY);
    handler = () => json(401, { error: { code: "unauthorized", message: "revoked", details: { reason: "revoked" } } });
    open("/ui/sandboxes");
    expect((await screen.findByRole("alert")).textContent).toMatch(/expired or was revoked/);
    expect(window.location.pathname).toBe("/ui/signin");
    expect(window.sessionStorage.length).toBe(0);
  });

  it("signs out when the events socket refuses the key", async () => {
    window.sessionStorage.setItem("collab-bus.api-key", KEY);
    open("/ui/sandboxes");
    await screen.findByRole("table");
    const ws = FakeWebSocket.instances.at(-1)!;
    ws.onopen?.();
    ws.onmessage?.({ data: JSON.stringify({ type: "error", code: "unauthorized", message: "no", details: {} }) });
    expect((await screen.findByRole("alert")).textContent).toMatch(/expired or was revoked/);
  });

  it("signs out on request and forgets the key", async () => {
    window.sessionStorage.setItem("collab-bus.api-key", KEY);
    open("/ui/sandboxes");
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Sign out" }));
    expect(await screen.findByLabelText("API key")).toBeTruthy();
    expect(screen.getByRole("status").textContent).toMatch(/signed out/);
    expect(window.sessionStorage.length).toBe(0);
  });
});

describe("shell", () => {
  it("has a main navigation marking the current page, and says when a page does not exist", async () => {
    window.sessionStorage.setItem("collab-bus.api-key", KEY);
    open("/ui/workspaces");
    const nav = await screen.findByRole("navigation", { name: "Main" });
    for (const name of ["Overview", "Sandboxes", "Live", "Traces", "Dead letters", "Workspaces"]) {
      expect(within(nav).getByRole("link", { name })).toBeTruthy();
    }
    expect(within(nav).getByRole("link", { name: "Workspaces" }).getAttribute("aria-current")).toBe("page");
    expect(within(nav).getByRole("link", { name: "Overview" }).getAttribute("href")).toBe("/ui/");
    expect(screen.getByRole("heading", { level: 1, name: "Workspaces" })).toBeTruthy();
    cleanup();
    open("/ui/nowhere");
    expect(await screen.findByRole("heading", { level: 1, name: "Page not found" })).toBeTruthy();
  });

  it("changes the filters in the URL", async () => {
    window.sessionStorage.setItem("collab-bus.api-key", KEY);
    open("/ui/sandboxes");
    const user = userEvent.setup();
    await screen.findByRole("table");
    await user.selectOptions(screen.getByLabelText("Workspace"), "other");
    expect(window.location.search).toBe("?workspace=other");
    await user.selectOptions(screen.getByLabelText("Status"), "online");
    expect(window.location.search).toBe("?workspace=other&status=online");
    expect(await screen.findByText("No sandbox matches these filters")).toBeTruthy();
    await user.click(screen.getByRole("button", { name: "Clear filters" }));
    expect(window.location.search).toBe("");
  });
});

describe("overview", () => {
  it("shows sandboxes by status, health, and dead letters by reason, saying when only a page was counted", async () => {
    window.sessionStorage.setItem("collab-bus.api-key", KEY);
    const rates = { accepted: 0.5, delivered: 0.5, dead_lettered: 0 };
    const reasons = ["expired", "expired", "nacked"];
    handler = (url, init) => {
      if (keyOf(init) !== KEY) return json(401, { error: { code: "unauthorized", message: "x", details: {} } });
      if (url.startsWith("/api/v1/sandboxes?include_unregistered=true")) {
        return json(200, { count: 3, sandboxes: [sandbox("a", "online"), sandbox("b", "online"), sandbox("c", "unregistered")] });
      }
      if (url === "/readyz") return json(503, { error: { code: "not_ready", message: "not ready", details: { database: "ok", broker: "connection refused" } } });
      if (url === "/api/v1/collaboration/status") {
        return json(200, { connected: 2, message_rates: { last_60s: rates, last_300s: rates }, queues: { deliver: 4 }, sandboxes: { online: 2, offline: 0, unregistered: 1 }, unavailable: { workers: "no remote control" }, workers: null });
      }
      if (url === "/api/v1/dead-letters?limit=1000") {
        const dead_letters = Array.from({ length: 1000 }, (_, i) => ({ id: i + 1, reason: reasons[i % 3], attempts: 1, created_at: "2026-12-05T00:00:00Z", last_error: null, message_id: `m${i}`, sandbox_id: "a" }));
        return json(200, { count: 1000, dead_letters, next_after: 1000, total: 1500 });
      }
      return json(404, { error: { code: "not_found", message: url, details: {} } });
    };
    open("/ui/");
    expect(await screen.findByRole("heading", { level: 1, name: "Overview" })).toBeTruthy();
    const sandboxes = screen.getByRole("region", { name: "Sandboxes by status" });
    expect((await within(sandboxes).findByRole("link", { name: /^2 online/ })).getAttribute("href")).toBe("/ui/sandboxes?status=online");
    expect(within(sandboxes).getByRole("link", { name: /^0 offline/ })).toBeTruthy();
    expect(within(sandboxes).getByRole("link", { name: /^1 unregistered/ })).toBeTruthy();

    const health = screen.getByRole("region", { name: "Health" });
    expect(await within(health).findByText("Not ready")).toBeTruthy();
    expect(within(health).getByText("broker: connection refused")).toBeTruthy();
    expect(await within(health).findByText("Unknown: no remote control")).toBeTruthy();

    const dead = screen.getByRole("region", { name: "Dead letters by reason" });
    const rows = await within(dead).findAllByRole("row");
    expect(rows.map((r) => r.textContent)).toEqual(["ReasonCount", "expired667", "nacked333"]);
    expect(within(dead).getByText(/first 1000 of 1500 dead letters only/)).toBeTruthy();

    expect(screen.getByRole("img", { name: /Messages accepted: 0 in the last 5 minutes/ })).toBeTruthy();
  });
});
