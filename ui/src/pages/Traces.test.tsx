// @vitest-environment jsdom
import { cleanup, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fakeBus, json, openSignedIn } from "@/test/harness";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
});

const summary = {
  trace_id: "t1",
  root_message_id: "t1",
  root_from_sandbox: "sb-a",
  started_at: "2026-12-05T20:00:00+00:00",
  last_at: "2026-12-05T20:00:01+00:00",
  message_count: 2,
  max_hops: 1,
  sandboxes: ["sb-a", "sb-b"],
  dead_messages: 1,
};

const msg = (id: string, from: string, to: string, type: string) => ({
  message_id: id, from_sandbox: from, to_sandbox: to, from_agent: "x", to_agent: "any", message_type: type, content: {}, timestamp: 0,
  priority: 5, requires_response: false, correlation_id: null, ttl: null, metadata: {}, topic: null,
});

const trace = {
  trace_id: "t1",
  message_count: 2,
  truncated: false,
  roots: [
    {
      message: msg("t1", "sb-a", "sb-b", "request"), status: "delivered", hops: 0, parent_id: null,
      accepted_at: "2026-12-05T20:00:00+00:00", routed_at: "2026-12-05T20:00:00.010+00:00",
      deliveries: [{ sandbox_id: "sb-b", seq: 1, state: "acked", attempts: 1, delivered_at: "2026-12-05T20:00:00.010+00:00", acked_at: "2026-12-05T20:00:00.510+00:00" }],
      dead_letters: [],
      children: [
        {
          message: msg("m2", "sb-b", "sb-c", "request"), status: "dead", hops: 1, parent_id: "t1",
          accepted_at: "2026-12-05T20:00:00.600+00:00", routed_at: null, deliveries: [],
          dead_letters: [{ sandbox_id: "sb-c", reason: "recipient_gone", last_error: "gone", created_at: "2026-12-05T20:00:01+00:00" }],
          children: [],
        },
      ],
    },
  ],
};

describe("traces", () => {
  it("lists traces with the URL's filters and links each", async () => {
    const calls = fakeBus((call) => (call.url.startsWith("/api/v1/traces?") ? json(200, { count: 1, traces: [summary] }) : json(404, {})));
    openSignedIn("/ui/traces?sandbox=sb-a");
    const link = await screen.findByRole("link", { name: "t1" });
    expect(link.getAttribute("href")).toBe("/ui/traces/t1");
    expect(calls[0]?.url).toBe("/api/v1/traces?sandbox=sb-a&limit=100");
    expect(screen.getByText("1 dead")).toBeTruthy();
    const user = userEvent.setup();
    await user.clear(screen.getByLabelText("Sandbox"));
    await user.type(screen.getByLabelText("Sandbox"), "sb-b");
    await user.click(screen.getByRole("button", { name: "Apply filters" }));
    expect(window.location.search).toBe("?sandbox=sb-b");
  });

  it("shows the tree and a timeline with durations, failures highlighted", async () => {
    fakeBus((call) => (call.url === "/api/v1/traces/t1" ? json(200, trace) : json(404, {})));
    openSignedIn("/ui/traces/t1");
    expect((await screen.findByTestId("trace-summary")).textContent).toBe("2 messages over 1 s; 1 with failures.");
    const tree = screen.getByRole("list", { name: "Conversation tree" });
    expect(within(tree).getByRole("link", { name: "sb-b → sb-c" }).getAttribute("href")).toBe("/ui/messages/m2");
    const timeline = screen.getByRole("list", { name: "Timeline of the hops" });
    const first = timeline.querySelector('[data-message-id="t1"]') as HTMLElement;
    expect(first.textContent).toContain("sb-b: delivered +10 ms, acked +500 ms (1 attempt)");
    const failed = timeline.querySelector('[data-message-id="m2"]') as HTMLElement;
    expect(failed.getAttribute("data-failed")).toBe("true");
    expect(failed.textContent).toContain("dead letter recipient_gone at sb-c: gone");
  });
});
