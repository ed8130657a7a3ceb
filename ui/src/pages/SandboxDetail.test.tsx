// @vitest-environment jsdom
import { act, cleanup, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FakeWebSocket, fakeBus, json, openSignedIn, type Call } from "@/test/harness";

interface Managed {
  state: string;
  desired_state: string;
  state_reason?: string | null;
}

const registration = (id: string, managed: Managed | null) => ({
  sandbox_id: id,
  workspace: "demo",
  agents: [
    {
      name: "planner",
      capabilities: ["plan"],
      skills: [{ id: "summarize", name: "Summarize", description: "Summarises text", tags: [], input_schema: null, output_schema: null }],
    },
  ],
  metadata: {},
  status: "online",
  head_seq: 7,
  settled_seq: 5,
  last_heartbeat: new Date().toISOString(),
  registered_at: "2026-12-05T20:00:00+00:00",
  managed: managed !== null,
  ...(managed
    ? {
        state: managed.state,
        desired_state: managed.desired_state,
        state_reason: managed.state_reason ?? null,
        state_changed_at: "2026-12-05T20:01:00+00:00",
        container_id: "c0ffee0123456789",
        spec: { image: "busybox:1", command: ["sh", "-c", "echo hi"], env: { TOKEN: "s3cret" }, limits: { memory_mb: 256, cpus: 0.5 }, network_mode: "host" },
      }
    : {}),
});

const statusOf = (id: string, m: Managed) => ({
  ...registration(id, m),
  container: { id: "c0ffee0123456789", status: m.state === "running" ? "running" : "exited", exit_code: m.state === "running" ? null : 0, error: "", oom_killed: false, started_at: "2026-12-05T20:01:00+00:00", finished_at: null },
  engine_error: null,
});

const notFound = (what: string) => json(404, { error: { code: "unknown_sandbox", message: `sandbox '${what}' is not registered`, details: {} } });

/** A bus with one sandbox whose managed state the test changes; commands move `desired_state`. */
function bus(id: string, initial: Managed | null, extra?: (call: Call) => Response | undefined) {
  const box = { current: initial, gone: false };
  const calls = fakeBus((call) => {
    const hit = extra?.(call);
    if (hit) return hit;
    const base = `/api/v1/sandboxes/${id}`;
    if (box.gone && call.url.startsWith(base)) return notFound(id);
    if (call.method === "GET" && call.url === base) return json(200, registration(id, box.current));
    if (call.method === "GET" && call.url === `${base}/status`) {
      return box.current ? json(200, statusOf(id, box.current)) : notFound(id);
    }
    if (call.method === "GET" && call.url === `${base}/subscriptions`) {
      return json(200, { sandbox_id: id, count: 1, subscriptions: [{ sandbox_id: id, pattern: "team.#", created_at: "2026-12-05T20:00:00+00:00" }] });
    }
    if (call.method === "POST" && box.current && (call.url === `${base}/start` || call.url === `${base}/stop`)) {
      box.current = { ...box.current, desired_state: call.url.endsWith("start") ? "running" : "stopped" };
      return json(202, statusOf(id, box.current));
    }
    if (call.method === "DELETE" && call.url === base && box.current) {
      box.current = { ...box.current, desired_state: "deleted" };
      return json(202, statusOf(id, box.current));
    }
    return json(404, { error: { code: "not_found", message: call.url, details: {} } });
  });
  return { calls, box };
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
});

async function welcomed() {
  await vi.waitFor(() => expect(FakeWebSocket.instances.length).toBeGreaterThan(0));
  const ws = FakeWebSocket.instances.at(-1)!;
  act(() => ws.welcome());
  return ws;
}

describe("sandbox page", () => {
  it("shows a managed sandbox's registration, container, agents and subscriptions, with links to its mailbox and logs", async () => {
    bus("sb-m", { state: "running", desired_state: "running" });
    openSignedIn("/ui/sandboxes/sb-m");
    expect(await screen.findByRole("heading", { level: 1, name: "Sandbox sb-m" })).toBeTruthy();
    expect((await screen.findByTestId("sandbox-state")).textContent).toBe("running");
    expect(screen.getByTestId("sandbox-limits").textContent).toBe("256 MiB memory · 0.5 CPU");
    expect(await screen.findByTestId("container-status")).toBeTruthy();
    // the environment's values stay hidden
    expect(document.body.textContent).toContain("TOKEN");
    expect(document.body.textContent).not.toContain("s3cret");
    expect(screen.getByText("Summarize")).toBeTruthy();
    expect(await screen.findByText("team.#")).toBeTruthy();
    expect(screen.getByRole("link", { name: "Mailbox" }).getAttribute("href")).toBe("/ui/sandboxes/sb-m/mailbox");
    expect(screen.getByRole("link", { name: "Logs" }).getAttribute("href")).toBe("/ui/sandboxes/sb-m/logs");
    // running as asked: Stop and Delete, no Start
    expect(screen.queryByRole("button", { name: "Start" })).toBeNull();
    expect(screen.getByRole("button", { name: "Stop" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Delete" })).toBeTruthy();
  });

  it("stops and starts it, its state following the bus's events", async () => {
    const { calls, box } = bus("sb-m", { state: "running", desired_state: "running" });
    openSignedIn("/ui/sandboxes/sb-m");
    const ws = await welcomed();
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Stop" }));
    expect(calls.some((c) => c.method === "POST" && c.url === "/api/v1/sandboxes/sb-m/stop")).toBe(true);
    // asked to stop, still running: Start (to change one's mind) but no second Stop
    await vi.waitFor(() => expect(screen.getByTestId("sandbox-desired-state").textContent).toBe("asked: stopped"));
    expect(screen.queryByRole("button", { name: "Stop" })).toBeNull();
    expect(screen.getByTestId("sandbox-state").textContent).toBe("running");
    // the lifecycle task moves it; the page hears it on /ws/events and refetches
    box.current = { state: "stopped", desired_state: "stopped" };
    act(() => ws.event("sandbox.state_changed", { sandbox_id: "sb-m", workspace: "demo", state: "stopped", desired_state: "stopped", reason: null }));
    await vi.waitFor(() => expect(screen.getByTestId("sandbox-state").textContent).toBe("stopped"));
    expect(screen.queryByTestId("sandbox-desired-state")).toBeNull();
    // an event about another sandbox fetches nothing
    const before = calls.length;
    act(() => ws.event("sandbox.state_changed", { sandbox_id: "other", state: "running" }));
    await new Promise((r) => setTimeout(r, 400));
    expect(calls.length).toBe(before);

    await user.click(screen.getByRole("button", { name: "Start" }));
    box.current = { state: "running", desired_state: "running" };
    act(() => ws.event("sandbox.state_changed", { sandbox_id: "sb-m", workspace: "demo", state: "running", desired_state: "running", reason: null }));
    await vi.waitFor(() => expect(screen.getByTestId("sandbox-state").textContent).toBe("running"));
    expect(calls.filter((c) => c.method === "POST").map((c) => c.url)).toEqual(["/api/v1/sandboxes/sb-m/stop", "/api/v1/sandboxes/sb-m/start"]);
  });

  it("shows why a sandbox is in error, and offers both commands again", async () => {
    bus("sb-e", { state: "error", desired_state: "running", state_reason: "image not found: busybox:9" });
    openSignedIn("/ui/sandboxes/sb-e");
    expect((await screen.findByTestId("sandbox-state")).textContent).toBe("error");
    expect(screen.getByText("image not found: busybox:9")).toBeTruthy();
    expect(screen.getByRole("button", { name: "Start" })).toBeTruthy();
    expect(screen.getByRole("button", { name: "Stop" })).toBeTruthy();
  });

  it("deletes after a confirmation, then says it is gone", async () => {
    const { calls, box } = bus("sb-m", { state: "stopped", desired_state: "stopped" });
    openSignedIn("/ui/sandboxes/sb-m");
    const ws = await welcomed();
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Delete" }));
    const dialog = await screen.findByRole("alertdialog");
    expect(within(dialog).getByRole("heading").textContent).toBe("Delete sandbox sb-m?");
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    await user.click(within(dialog).getByRole("button", { name: "Delete sandbox" }));
    await vi.waitFor(() => expect(screen.queryByRole("alertdialog")).toBeNull());
    expect(calls.find((c) => c.method === "DELETE")?.url).toBe("/api/v1/sandboxes/sb-m");
    // being deleted: no command applies
    await vi.waitFor(() => expect(screen.queryByRole("button", { name: "Delete" })).toBeNull());
    expect(screen.queryByRole("button", { name: "Start" })).toBeNull();
    box.gone = true;
    act(() => ws.event("sandbox.state_changed", { sandbox_id: "sb-m", state: "deleted", desired_state: "deleted", reason: null }));
    expect(await screen.findByRole("heading", { name: "Sandbox deleted" })).toBeTruthy();
  });

  it("says plainly when the key's role may not manage sandboxes (403)", async () => {
    bus("sb-m", { state: "running", desired_state: "running" }, (call) =>
      call.method === "POST"
        ? json(403, { error: { code: "forbidden", message: "role 'viewer' may not sandboxes manage", details: { permission: "sandboxes.manage", role: "viewer" } } })
        : undefined,
    );
    openSignedIn("/ui/sandboxes/sb-m");
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Stop" }));
    expect((await screen.findByRole("alert")).textContent).toMatch(/role \(viewer\) lacks the sandboxes.manage permission/);
    expect(screen.getByTestId("sandbox-state").textContent).toBe("running");
  });

  it("has no lifecycle actions or logs for a sandbox that registered itself", async () => {
    bus("sb-self", null);
    openSignedIn("/ui/sandboxes/sb-self");
    expect(await screen.findByTestId("not-managed")).toBeTruthy();
    for (const name of ["Start", "Stop", "Delete"]) expect(screen.queryByRole("button", { name })).toBeNull();
    expect(screen.queryByRole("link", { name: "Logs" })).toBeNull();
    expect(screen.getByRole("link", { name: "Mailbox" })).toBeTruthy();
    expect(screen.queryByTestId("sandbox-state")).toBeNull();
  });

  it("says when there is no such sandbox", async () => {
    bus("sb-m", null);
    openSignedIn("/ui/sandboxes/nobody");
    expect(await screen.findByRole("heading", { name: "No such sandbox" })).toBeTruthy();
  });
});
