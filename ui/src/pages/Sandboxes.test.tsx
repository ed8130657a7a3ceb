// @vitest-environment jsdom
import { cleanup, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fakeBus, json, openSignedIn, type Call } from "@/test/harness";

const sandbox = (id: string, managed: boolean) => ({
  sandbox_id: id,
  workspace: "demo",
  agents: [],
  metadata: {},
  status: "offline",
  head_seq: 0,
  settled_seq: 0,
  last_heartbeat: null,
  registered_at: "2026-12-05T20:00:00+00:00",
  managed,
  ...(managed ? { state: "creating", desired_state: "running", state_reason: null, state_changed_at: null, container_id: null, spec: {} } : {}),
});

const edition = (enabled: boolean) => ({ edition: "community", limits: { managed_sandboxes: 5 }, managed_sandboxes: { enabled, in_use: 1 } });
const workspace = (id: string) => ({ id, name: id, description: "", settings: {}, sandbox_count: 0, created_at: "2026-12-05T20:00:00+00:00", updated_at: "2026-12-05T20:00:00+00:00" });

function bus(enabled: boolean, extra?: (call: Call) => Response | undefined) {
  return fakeBus((call) => {
    const hit = extra?.(call);
    if (hit) return hit;
    if (call.url === "/api/v1/edition") return json(200, edition(enabled));
    if (call.url === "/api/v1/workspaces") return json(200, { count: 2, workspaces: [workspace("demo"), workspace("research")] });
    if (call.method === "GET" && call.url.startsWith("/api/v1/sandboxes?")) return json(200, { count: 1, sandboxes: [sandbox("sb-a", false)] });
    if (call.method === "GET" && call.url === "/api/v1/sandboxes/sb-new") return json(200, sandbox("sb-new", true));
    return json(404, { error: { code: "not_found", message: call.url, details: {} } });
  });
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
});

describe("sandboxes list", () => {
  it("links each sandbox to its page", async () => {
    bus(true);
    openSignedIn("/ui/sandboxes");
    const table = await screen.findByRole("table");
    expect(within(table).getByRole("link", { name: "sb-a" }).getAttribute("href")).toBe("/ui/sandboxes/sb-a");
  });

  it("creates a managed sandbox in a dialog and opens its page", async () => {
    const calls = bus(true, (call) =>
      call.method === "POST" && call.url === "/api/v1/sandboxes" ? json(202, { ...sandbox("sb-new", true), sandbox_id: "sb-new" }) : undefined,
    );
    openSignedIn("/ui/sandboxes?workspace=research");
    expect(await screen.findByText("No sandbox matches these filters")).toBeTruthy();
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Create sandbox" }));
    const dialog = await screen.findByRole("dialog");
    // the page's workspace filter is proposed
    await vi.waitFor(() => expect((within(dialog).getByLabelText("Workspace") as HTMLSelectElement).value).toBe("research"));
    await user.type(within(dialog).getByLabelText("Sandbox id"), "sb-new");
    await user.type(within(dialog).getByLabelText("Image"), "busybox:1");
    await user.type(within(dialog).getByLabelText("Memory limit (MiB)"), "4");
    await user.click(within(dialog).getByRole("button", { name: "Create sandbox" }));
    // checked before sending
    expect(within(dialog).getByText(/Memory limit \(MiB\): a whole number from 8/)).toBeTruthy();
    expect(calls.some((c) => c.method === "POST")).toBe(false);
    await user.clear(within(dialog).getByLabelText("Memory limit (MiB)"));
    await user.type(within(dialog).getByLabelText("Memory limit (MiB)"), "256");
    await user.click(within(dialog).getByRole("button", { name: "Create sandbox" }));
    expect(await screen.findByRole("heading", { level: 1, name: "Sandbox sb-new" })).toBeTruthy();
    expect(window.location.pathname).toBe("/ui/sandboxes/sb-new");
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({
      sandbox_id: "sb-new",
      workspace: "research",
      image: "busybox:1",
      limits: { memory_mb: 256 },
      start: true,
    });
  });

  it("lists the bus's validation details and a viewer's 403 in the dialog", async () => {
    let answer = json(400, { error: { code: "validation_error", message: "invalid body", details: { limits: { cpus: ["Must be at least 0.01."] } } } });
    bus(true, (call) => (call.method === "POST" ? answer : undefined));
    openSignedIn("/ui/sandboxes");
    await screen.findByRole("table");
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Create sandbox" }));
    const dialog = await screen.findByRole("dialog");
    await vi.waitFor(() => expect((within(dialog).getByLabelText("Workspace") as HTMLSelectElement).value).toBe("demo"));
    await user.click(within(dialog).getByRole("button", { name: "Create sandbox" }));
    expect(await within(dialog).findByText("limits.cpus: Must be at least 0.01.")).toBeTruthy();
    answer = json(403, { error: { code: "forbidden", message: "no", details: { permission: "sandboxes.manage", role: "viewer" } } });
    await user.click(within(dialog).getByRole("button", { name: "Create sandbox" }));
    expect((await within(dialog).findByRole("alert")).textContent).toMatch(/role \(viewer\) lacks the sandboxes.manage permission/);
  });

  it("disables Create sandbox on a bus that runs no containers, and says why", async () => {
    bus(false);
    openSignedIn("/ui/sandboxes");
    await screen.findByRole("table");
    const button = screen.getByRole("button", { name: "Create sandbox" });
    await vi.waitFor(() => expect(button.hasAttribute("disabled")).toBe(true));
    expect(screen.getByText(/managed sandboxes are off/)).toBeTruthy();
  });
});
