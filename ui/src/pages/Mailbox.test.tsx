// @vitest-environment jsdom
import { act, cleanup, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FakeWebSocket, fakeBus, json, openSignedIn } from "@/test/harness";

const entry = (seq: number, state = "delivered") => ({
  seq,
  state,
  message: {
    message_id: `m${seq}`,
    from_sandbox: "sb-a",
    from_agent: "planner",
    to_sandbox: "sb-b",
    to_agent: "any",
    message_type: seq % 2 ? "request" : "notification",
    content: { task: `job ${seq}` },
    metadata: { trace: { trace_id: `m${seq}`, parent_id: null, hops: 0 } },
    timestamp: 1795555990 + seq,
    priority: 5,
    requires_response: false,
    correlation_id: null,
    ttl: null,
    topic: null,
  },
});

/** A mailbox of `head` entries; GET …/messages answers as the bus does. */
function bus(head: { current: number }) {
  return fakeBus((call) => {
    const url = new URL(call.url, "http://x");
    if (url.pathname === "/api/v1/sandboxes/sb-b/messages") {
      const since = Number(url.searchParams.get("since") ?? 0);
      const limit = Number(url.searchParams.get("limit") ?? 100);
      const seqs = [];
      for (let s = since + 1; s <= Math.min(head.current, since + limit); s++) seqs.push(s);
      return json(200, { sandbox_id: "sb-b", since, head_seq: head.current, entries: seqs.map((s) => entry(s, s === 1 ? "acked" : "delivered")), next_since: seqs.at(-1) ?? since });
    }
    if (url.pathname.startsWith("/api/v1/sandboxes/")) return json(404, { error: { code: "unknown_sandbox", message: "not registered", details: {} } });
    return json(404, { error: { code: "not_found", message: call.url, details: {} } });
  });
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
});

describe("mailbox browser", () => {
  it("lists entries with links to their messages, pages forward by next_since and keeps since in the URL", async () => {
    const calls = bus({ current: 30 });
    openSignedIn("/ui/sandboxes/sb-b/mailbox?limit=25");
    expect(await screen.findByRole("heading", { level: 1, name: "Mailbox of sb-b" })).toBeTruthy();
    expect(screen.getByTestId("read-only-note").textContent).toMatch(/changes nothing/);
    const table = await screen.findByRole("table");
    expect(within(table).getAllByRole("row")).toHaveLength(26);
    expect(calls[0]?.url).toBe("/api/v1/sandboxes/sb-b/messages?since=0&limit=25");
    expect(screen.getByTestId("head-seq").textContent).toBe("30");
    const first = table.querySelector('[data-seq="1"]') as HTMLElement;
    expect(within(first).getByRole("link", { name: "m1" }).getAttribute("href")).toBe("/ui/messages/m1");
    expect(within(first).getByText("acked")).toBeTruthy();
    expect(within(first).getByText("request")).toBeTruthy();
    expect(within(first).getByText("sb-a / planner")).toBeTruthy();

    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: /Next page/ }));
    await vi.waitFor(() => expect(window.location.search).toBe("?since=25&limit=25"));
    await vi.waitFor(() => expect(screen.getByTestId("mailbox-summary").textContent).toMatch(/Showing seq 26 to 30/));
    expect(calls.at(-1)?.url).toBe("/api/v1/sandboxes/sb-b/messages?since=25&limit=25");
    expect(screen.getByRole("button", { name: /Next page/ }).hasAttribute("disabled")).toBe(true);
    await user.click(screen.getByRole("button", { name: /Previous page/ }));
    await vi.waitFor(() => expect(window.location.search).toBe("?limit=25"));
  });

  it("expands an entry to show its content", async () => {
    bus({ current: 2 });
    openSignedIn("/ui/sandboxes/sb-b/mailbox");
    const user = userEvent.setup();
    const toggle = await screen.findByRole("button", { name: "Show content of seq 2" });
    expect(toggle.getAttribute("aria-expanded")).toBe("false");
    await user.click(toggle);
    const block = screen.getByRole("region", { name: "Content of seq 2" });
    expect(JSON.parse(block.textContent ?? "")).toEqual({ task: "job 2" });
    expect(screen.getByRole("button", { name: "Hide content of seq 2" }).getAttribute("aria-expanded")).toBe("true");
  });

  it("starts from the URL's since, says when nothing follows, and refetches when a message reaches the mailbox", async () => {
    const head = { current: 3 };
    bus(head);
    openSignedIn("/ui/sandboxes/sb-b/mailbox?since=3");
    expect(await screen.findByRole("heading", { name: "Nothing after this point" })).toBeTruthy();
    expect((screen.getByLabelText("After seq") as HTMLInputElement).value).toBe("3");
    const ws = FakeWebSocket.instances.at(-1)!;
    act(() => ws.welcome());
    head.current = 4;
    act(() => ws.event("message.delivered", { message_id: "m4", to_sandbox: "sb-b", recipients: ["sb-b"], recipient_count: 1 }));
    expect(await screen.findByRole("link", { name: "m4" }, { timeout: 3000 })).toBeTruthy();
  });

  it("jumps to a seq typed in, and refuses one that is not a number", async () => {
    bus({ current: 10 });
    openSignedIn("/ui/sandboxes/sb-b/mailbox");
    await screen.findByRole("table");
    const user = userEvent.setup();
    const input = screen.getByLabelText("After seq");
    await user.clear(input);
    await user.type(input, "x");
    await user.click(screen.getByRole("button", { name: "Show" }));
    expect(screen.getByRole("alert").textContent).toMatch(/whole number/);
    await user.clear(input);
    await user.type(input, "8");
    await user.click(screen.getByRole("button", { name: "Show" }));
    await vi.waitFor(() => expect(window.location.search).toBe("?since=8"));
    await vi.waitFor(() => expect(screen.getByTestId("mailbox-summary").textContent).toMatch(/Showing seq 9 to 10/));
  });

  it("says when the sandbox is not registered", async () => {
    bus({ current: 0 });
    openSignedIn("/ui/sandboxes/ghost/mailbox");
    expect(await screen.findByRole("heading", { name: "No such sandbox" })).toBeTruthy();
  });
});
