// @vitest-environment jsdom
import { cleanup, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fakeBus, forbidden, json, openSignedIn, type Call } from "@/test/harness";

const deadLetter = (id: number) => ({
  id,
  message_id: `m${id}`,
  sandbox_id: "sb-bob",
  reason: "nacked",
  attempts: 2,
  last_error: `crash ${id}`,
  created_at: "2026-12-05T20:00:00+00:00",
});

function bus(total: number, extra?: (call: Call) => Response | undefined) {
  return fakeBus((call) => {
    const hit = extra?.(call);
    if (hit) return hit;
    if (call.method === "GET" && call.url.startsWith("/api/v1/dead-letters")) {
      const limit = Number(new URL(call.url, "http://x").searchParams.get("limit"));
      const n = Math.min(limit, total);
      return json(200, { count: n, dead_letters: Array.from({ length: n }, (_, i) => deadLetter(i + 1)), next_after: null, total });
    }
    return json(404, { error: { code: "not_found", message: call.url, details: {} } });
  });
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
});

describe("dead letters", () => {
  it("lists with the URL's filters and counts before replaying by the filter", async () => {
    const calls = bus(3, (call) =>
      call.method === "POST" && call.url === "/api/v1/dead-letters/replay" ? json(202, { replayed: 3, items: [] }) : undefined,
    );
    openSignedIn("/ui/dead-letters?reason=nacked&sandbox_id=sb-bob");
    const table = await screen.findByRole("table");
    expect(within(table).getAllByRole("row")).toHaveLength(4);
    expect(calls[0]?.url).toBe("/api/v1/dead-letters?reason=nacked&sandbox_id=sb-bob&limit=50");
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Replay matching…" }));
    expect((await screen.findByTestId("bulk-count")).textContent).toMatch(/^3 dead letters match — replay them\?/);
    expect(calls.at(-1)?.url).toBe("/api/v1/dead-letters?reason=nacked&sandbox_id=sb-bob&limit=1");
    await user.click(screen.getByRole("button", { name: "Replay 3 dead letters" }));
    expect((await screen.findByTestId("bulk-result")).textContent).toBe("Replayed 3 dead letters.");
    const post = calls.find((c) => c.method === "POST");
    expect(post?.body).toEqual({ reason: "nacked", sandbox_id: "sb-bob", limit: 3 });
  });

  it("purges everything only after a second confirmation, with all=true", async () => {
    const calls = bus(5, (call) => (call.method === "DELETE" ? json(200, { purged: 5 }) : undefined));
    openSignedIn("/ui/dead-letters");
    await screen.findByRole("table");
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Purge matching…" }));
    await user.click(await screen.findByRole("button", { name: "Purge all 5 dead letters…" }));
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    expect((await screen.findByTestId("bulk-count")).textContent).toMatch(/Really purge all 5/);
    await user.click(screen.getByRole("button", { name: "Yes, purge every dead letter" }));
    expect((await screen.findByTestId("bulk-result")).textContent).toBe("Purged 5 dead letters.");
    expect(calls.find((c) => c.method === "DELETE")?.url).toBe("/api/v1/dead-letters?all=true");
  });

  it("purges by a filter after one confirmation", async () => {
    const calls = bus(2, (call) => (call.method === "DELETE" ? json(200, { purged: 2 }) : undefined));
    openSignedIn("/ui/dead-letters?reason=expired");
    await screen.findByRole("table");
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Purge matching…" }));
    await user.click(await screen.findByRole("button", { name: "Purge 2 dead letters" }));
    await screen.findByTestId("bulk-result");
    expect(calls.find((c) => c.method === "DELETE")?.url).toBe("/api/v1/dead-letters?reason=expired");
  });

  it("says plainly when the key's role may not replay (403)", async () => {
    bus(1, (call) => (call.method === "POST" ? forbidden() : undefined));
    openSignedIn("/ui/dead-letters");
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Replay dead letter 1" }));
    expect((await screen.findByRole("alert")).textContent).toMatch(/role \(viewer\) lacks the dead_letters.manage permission/);
  });

  it("applies the filter form to the URL", async () => {
    bus(0);
    openSignedIn("/ui/dead-letters");
    expect(await screen.findByText("No dead letters")).toBeTruthy();
    const user = userEvent.setup();
    await user.selectOptions(screen.getByLabelText("Reason"), "expired");
    await user.type(screen.getByLabelText("Sandbox"), "sb-a");
    await user.click(screen.getByRole("button", { name: "Apply filters" }));
    expect(window.location.search).toBe("?reason=expired&sandbox_id=sb-a");
    expect(await screen.findByText("No dead letter matches these filters")).toBeTruthy();
  });
});
