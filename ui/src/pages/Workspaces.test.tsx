// @vitest-environment jsdom
import { cleanup, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fakeBus, json, openSignedIn, type Call } from "@/test/harness";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
});

const ws = (id: string, sandbox_count = 0, settings: Record<string, unknown> = {}) => ({
  id,
  name: id,
  description: "",
  settings,
  sandbox_count,
  created_at: "2026-12-05T20:00:00+00:00",
  updated_at: "2026-12-05T20:00:00+00:00",
});

function bus(extra: (call: Call) => Response | undefined) {
  return fakeBus((call) => {
    const hit = extra(call);
    if (hit) return hit;
    if (call.method === "GET" && call.url === "/api/v1/workspaces") {
      return json(200, { count: 2, workspaces: [ws("demo", 3), ws("research", 0, { default_image: "aintandem/collab-agent", default_limits: { memory_mb: 256 } })] });
    }
    return json(404, { error: { code: "not_found", message: call.url, details: {} } });
  });
}

describe("workspaces", () => {
  it("creates a workspace from the form", async () => {
    const calls = bus((c) => (c.method === "POST" ? json(201, ws("team")) : undefined));
    openSignedIn("/ui/workspaces");
    const table = await screen.findByRole("table");
    expect(within(table).getByText(/image aintandem\/collab-agent · 256 MB/)).toBeTruthy();
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "New workspace" }));
    const dialog = await screen.findByTestId("workspace-dialog");
    await user.type(within(dialog).getByLabelText("Workspace id"), "team");
    await user.type(within(dialog).getByLabelText("Stop when idle for (minutes)"), "30");
    await user.click(within(dialog).getByRole("button", { name: "Create workspace" }));
    expect(await screen.findByText("Workspace team created.")).toBeTruthy();
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ id: "team", description: "", settings: { idle_stop_minutes: 30 } });
  });

  it("edits settings with PUT, sending them all", async () => {
    const calls = bus((c) => (c.method === "PUT" ? json(200, ws("research")) : undefined));
    openSignedIn("/ui/workspaces");
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Edit workspace research" }));
    const dialog = await screen.findByTestId("workspace-dialog");
    const memory = within(dialog).getByLabelText("Memory limit (MB)");
    await user.clear(memory);
    await user.type(memory, "512");
    await user.click(within(dialog).getByRole("button", { name: "Save changes" }));
    await screen.findByText("Workspace research saved.");
    const put = calls.find((c) => c.method === "PUT")!;
    expect(put.url).toBe("/api/v1/workspaces/research");
    expect(put.body).toEqual({ name: "research", description: "", settings: { default_image: "aintandem/collab-agent", default_limits: { memory_mb: 512 } } });
  });

  it("deletes a workspace with sandboxes only with force, after confirmation", async () => {
    const calls = bus((c) => (c.method === "DELETE" ? json(200, { id: "demo", deleted: true, deleting_sandboxes: [] }) : undefined));
    openSignedIn("/ui/workspaces");
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "Delete workspace demo" }));
    const dialog = await screen.findByTestId("workspace-delete-dialog");
    const confirm = within(dialog).getByRole("button", { name: "Delete workspace" });
    expect(confirm.hasAttribute("disabled")).toBe(true);
    await user.click(within(dialog).getByLabelText(/Also unregister its 3 sandboxes/));
    await user.click(confirm);
    await screen.findByText("Workspace demo deleted.");
    expect(calls.find((c) => c.method === "DELETE")?.url).toBe("/api/v1/workspaces/demo?force=true");
  });

  it("shows a viewer's refusal in the dialog", async () => {
    bus((c) =>
      c.method === "POST"
        ? json(403, { error: { code: "forbidden", message: "no", details: { permission: "workspaces.manage", role: "viewer" } } })
        : undefined,
    );
    openSignedIn("/ui/workspaces");
    const user = userEvent.setup();
    await user.click(await screen.findByRole("button", { name: "New workspace" }));
    const dialog = await screen.findByTestId("workspace-dialog");
    await user.type(within(dialog).getByLabelText("Workspace id"), "x");
    await user.click(within(dialog).getByRole("button", { name: "Create workspace" }));
    expect((await within(dialog).findByRole("alert")).textContent).toMatch(/viewer.*workspaces.manage/);
  });
});
