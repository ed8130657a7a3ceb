// @vitest-environment jsdom
import { act, cleanup, fireEvent, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FakeWebSocket, fakeBus, json, openSignedIn } from "@/test/harness";

const sandbox = (id: string) => ({
  sandbox_id: id,
  workspace: "demo",
  agents: [],
  metadata: {},
  status: "online",
  head_seq: 0,
  settled_seq: 0,
  last_heartbeat: null,
  registered_at: "2026-12-05T20:00:00+00:00",
  managed: false,
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
});

function setup(path = "/ui/live") {
  const calls = fakeBus((call) => {
    if (call.url.startsWith("/api/v1/sandboxes")) return json(200, { count: 2, sandboxes: [sandbox("sb-a"), sandbox("sb-b")] });
    return json(404, { error: { code: "not_found", message: call.url, details: {} } });
  });
  openSignedIn(path);
  return calls;
}

async function socket() {
  await screen.findByTestId("live-graph");
  const ws = FakeWebSocket.instances.at(-1)!;
  act(() => ws.welcome());
  return ws;
}

const accepted = (id: string, from: string, to: string, extra: Record<string, unknown> = {}) => ({
  message_id: id,
  from_sandbox: from,
  to_sandbox: to,
  message_type: "request",
  correlation_id: null,
  trace_id: id,
  parent_id: null,
  ...extra,
});

describe("live view", () => {
  it("lights the edge of a message and lists it in the feed with links to its details and its trace", async () => {
    setup();
    const ws = await socket();
    act(() => ws.event("message.accepted", accepted("m1", "sb-a", "sb-b")));
    const edge = document.querySelector('[data-edge="sb-a->sb-b"]');
    expect(edge?.getAttribute("data-active")).toBe("true");
    const entry = document.querySelector('[data-message-id="m1"]') as HTMLElement;
    expect(within(entry).getByRole("link", { name: "m1" }).getAttribute("href")).toBe("/ui/messages/m1");
    expect(within(entry).getByRole("link", { name: "trace" }).getAttribute("href")).toBe("/ui/traces/m1");
    // an answer: in its request's trace, with the request as its correlation id
    act(() => ws.event("message.accepted", accepted("m9", "sb-b", "sb-a", { message_type: "response", correlation_id: "m1", trace_id: "m1", parent_id: "m1" })));
    const answer = document.querySelector('[data-message-id="m9"]') as HTMLElement;
    expect(within(answer).getByRole("link", { name: "trace" }).getAttribute("href")).toBe("/ui/traces/m1");
    expect(answer.textContent).toContain("correlation m1");
    expect(within(answer).getAllByRole("link").map((l) => l.textContent)).toEqual(["m9", "trace"]);
    act(() => ws.event("message.delivered", { message_id: "m1", to_sandbox: "sb-b", recipients: ["sb-b"], recipient_count: 1 }));
    expect(within(entry).getByText("delivered")).toBeTruthy();
    expect(screen.getByRole("region", { name: "Recent edges, latest first" }).textContent).toMatch(/sb-a → sb-b 1 message/);
  });

  it("shows a broadcast through the hub, then to the sandboxes it reached", async () => {
    setup();
    const ws = await socket();
    act(() => ws.event("message.accepted", accepted("m2", "sb-a", "broadcast", { message_type: "notification" })));
    expect(document.querySelector('[data-edge="sb-a->broadcast"]')?.getAttribute("data-active")).toBe("true");
    act(() => ws.event("message.delivered", { message_id: "m2", to_sandbox: "broadcast", recipients: ["sb-b"], recipient_count: 1 }));
    expect(document.querySelector('[data-edge="sb-a->sb-b"]')?.getAttribute("data-active")).toBe("true");
  });

  it("holds new entries while scrolled away and resumes on request", async () => {
    setup();
    const ws = await socket();
    act(() => ws.event("message.accepted", accepted("m1", "sb-a", "sb-b")));
    const feed = screen.getByTestId("feed");
    feed.scrollTop = 200;
    fireEvent.scroll(feed);
    act(() => {
      ws.event("message.accepted", accepted("m2", "sb-b", "sb-a"));
      ws.event("message.accepted", accepted("m3", "sb-b", "sb-a"));
    });
    expect(document.querySelector('[data-message-id="m2"]')).toBeNull();
    const resume = screen.getByRole("button", { name: "2 new — resume" });
    fireEvent.click(resume);
    expect(document.querySelector('[data-message-id="m3"]')).toBeTruthy();
    expect(screen.getByTestId("feed-state").getAttribute("data-paused")).toBe("false");
  });

  it("filters by the URL's sandbox and type, and marks a reconnect gap", async () => {
    setup("/ui/live?type=notification");
    const ws = await socket();
    act(() => {
      ws.event("message.accepted", accepted("m1", "sb-a", "sb-b"));
      ws.event("message.accepted", accepted("m4", "sb-a", "sb-b", { message_type: "notification" }));
    });
    expect(document.querySelector('[data-message-id="m1"]')).toBeNull();
    expect(document.querySelector('[data-message-id="m4"]')).toBeTruthy();
    act(() => {
      ws.onclose?.({ code: 1006, reason: "" });
    });
    // the socket reconnects after a back-off; a new welcome marks the gap
    await vi.waitFor(() => expect(FakeWebSocket.instances.length).toBeGreaterThan(1), { timeout: 3000 });
    act(() => FakeWebSocket.instances.at(-1)!.welcome());
    expect(document.querySelector("[data-feed-gap]")?.textContent).toMatch(/may be missing/);
  });

  it("filters by the correlation id the events carry, looking no message up", async () => {
    const calls = setup("/ui/live?correlation=job-1");
    const ws = await socket();
    act(() => {
      ws.event("message.accepted", accepted("m1", "sb-a", "sb-b", { correlation_id: "job-1" }));
      ws.event("message.accepted", accepted("m5", "sb-a", "sb-b"));
      ws.event("message.accepted", accepted("m6", "sb-a", "sb-b", { correlation_id: "job-2" }));
    });
    expect(document.querySelector('[data-message-id="m1"]')).toBeTruthy();
    expect(document.querySelector('[data-message-id="m5"]')).toBeNull();
    expect(document.querySelector('[data-message-id="m6"]')).toBeNull();
    expect(calls.filter((c) => c.url.startsWith("/api/v1/messages"))).toEqual([]);
  });
});
