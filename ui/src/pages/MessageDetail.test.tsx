// @vitest-environment jsdom
import { cleanup, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fakeBus, json, openSignedIn } from "@/test/harness";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
});

const report = {
  message: {
    message_id: "m1",
    from_sandbox: "sb-a",
    to_sandbox: "sb-b",
    from_agent: "planner",
    to_agent: "any",
    message_type: "request",
    content: { task: "write tests" },
    timestamp: 1,
    priority: 7,
    requires_response: true,
    correlation_id: "job-42",
    ttl: null,
    metadata: { trace: { trace_id: "t1", parent_id: "m0", hops: 1 } },
    topic: null,
  },
  status: "delivered",
  accepted_at: "2026-12-05T20:00:00+00:00",
  routed_at: "2026-12-05T20:00:00.010+00:00",
  deliveries: [{ sandbox_id: "sb-b", seq: 3, state: "acked", attempts: 2, delivered_at: "2026-12-05T20:00:00.010+00:00", acked_at: "2026-12-05T20:00:01.510+00:00" }],
  response_state: "answered",
  responses: [{ message_id: "r1", from_sandbox: "sb-b", from_agent: "coder", status: "delivered", accepted_at: "2026-12-05T20:00:02+00:00" }],
  dead_letters: [{ sandbox_id: "sb-c", reason: "nacked", last_error: "tool crashed", created_at: "2026-12-05T20:00:03+00:00" }],
};

describe("message detail", () => {
  it("shows content, status, deliveries, dead letters, responses and links to the trace", async () => {
    fakeBus((call) => (call.url === "/api/v1/messages/m1" ? json(200, report) : json(404, { error: { code: "unknown_message", message: "no", details: {} } })));
    openSignedIn("/ui/messages/m1");
    expect((await screen.findByTestId("message-status")).textContent).toBe("delivered");
    expect(screen.getByRole("heading", { level: 1, name: "Message" })).toBeTruthy();
    expect(screen.getByRole("region", { name: "Message content" }).textContent).toContain('"task": "write tests"');
    expect(screen.getByRole("link", { name: /Open its trace/ }).getAttribute("href")).toBe("/ui/traces/t1");
    const row = screen.getByRole("rowheader", { name: "sb-b" }).closest("tr")!;
    expect(within(row).getByText("acked")).toBeTruthy();
    expect(within(row).getByText("1.5 s")).toBeTruthy();
    expect(screen.getByRole("link", { name: "r1" }).getAttribute("href")).toBe("/ui/messages/r1");
    expect(screen.getByText("tool crashed")).toBeTruthy();
    expect(screen.getByRole("link", { name: /Replay or purge them/ }).getAttribute("href")).toBe("/ui/dead-letters?message_id=m1");
  });

  it("says when there is no such message", async () => {
    fakeBus(() => json(404, { error: { code: "unknown_message", message: "no", details: {} } }));
    openSignedIn("/ui/messages/nope");
    expect(await screen.findByText("No such message")).toBeTruthy();
  });
});
