// @vitest-environment jsdom
import { cleanup, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fakeBus, json, openSignedIn, type Handler } from "@/test/harness";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
});

const configuration = {
  edition: "community",
  broker: "redis",
  settings: [
    { name: "ACK_TIMEOUT", value: 30.0, default: 30.0, changed: false, secret: false },
    { name: "ADMIN_API_KEY", value: "********", default: null, changed: true, secret: true },
    { name: "AUTH_JWT_SECRET", value: null, default: null, changed: false, secret: true },
    { name: "HEARTBEAT_TIMEOUT", value: 30.0, default: 30.0, changed: false, secret: false },
    { name: "PORT", value: 8792, default: 8000, changed: true, secret: false },
  ],
};

const edition = { edition: "community", limits: { managed_sandboxes: 5 }, managed_sandboxes: { enabled: true, in_use: 2 } };

const bus: Handler = (call) => {
  if (call.url === "/api/v1/configuration") return json(200, configuration);
  if (call.url === "/api/v1/edition") return json(200, edition);
  if (call.url === "/readyz") return json(200, { status: "ready", checks: { database: "ok", broker: "ok" } });
  return json(404, { error: { code: "not_found", message: call.url, details: {} } });
};

const rows = () => [...document.querySelectorAll("tr[data-setting]")].map((r) => r.getAttribute("data-setting"));

describe("configuration", () => {
  it("shows the edition, the broker and every setting, secrets hidden and changes marked", async () => {
    fakeBus(bus);
    openSignedIn("/ui/configuration");
    expect(screen.getByRole("heading", { level: 1, name: "Configuration" })).toBeTruthy();
    const nav = screen.getByRole("navigation", { name: "Main" });
    expect(within(nav).getByRole("link", { name: "Configuration" }).getAttribute("aria-current")).toBe("page");

    const table = await screen.findByRole("table", { name: /Settings/ });
    expect(rows()).toEqual(["ACK_TIMEOUT", "ADMIN_API_KEY", "AUTH_JWT_SECRET", "HEARTBEAT_TIMEOUT", "PORT"]);
    const admin = within(table).getByRole("row", { name: /ADMIN_API_KEY/ });
    expect(within(admin).getAllByRole("cell").map((c) => c.textContent)).toEqual(["set (hidden)", "not set"]);
    expect(admin.textContent).not.toContain("********");
    expect(within(admin).getByText("changed")).toBeTruthy();
    const port = within(table).getByRole("row", { name: /PORT/ });
    expect(within(port).getAllByRole("cell").map((c) => c.textContent)).toEqual(["8792", "8000"]);
    expect(port.getAttribute("data-changed")).toBe("true");
    const ack = within(table).getByRole("row", { name: /ACK_TIMEOUT/ });
    expect(within(ack).queryByText("changed")).toBeNull();
    expect(screen.getByTestId("settings-count").textContent).toBe("5 settings; 2 changed from the default.");

    expect((await screen.findByTestId("edition")).textContent).toContain("2 of 5");
    expect(screen.getByTestId("broker").textContent).toMatch(/^redis/);
    expect(await screen.findByText("database: ok")).toBeTruthy();
  });

  it("filters by the URL's words and changed only, and keeps the filters in the URL", async () => {
    fakeBus(bus);
    openSignedIn("/ui/configuration?q=timeout");
    await screen.findByRole("table", { name: /Settings/ });
    expect(rows()).toEqual(["ACK_TIMEOUT", "HEARTBEAT_TIMEOUT"]);
    expect((screen.getByLabelText("Filter") as HTMLInputElement).value).toBe("timeout");
    expect(screen.getByTestId("settings-count").textContent).toBe("2 of 5 settings shown; 2 changed from the default.");

    const user = userEvent.setup();
    await user.clear(screen.getByLabelText("Filter"));
    await user.click(screen.getByRole("checkbox", { name: "Changed only" }));
    expect(window.location.search).toBe("?changed=1");
    expect(rows()).toEqual(["ADMIN_API_KEY", "PORT"]);

    await user.type(screen.getByLabelText("Filter"), "hidden");
    expect(new URLSearchParams(window.location.search).get("q")).toBe("hidden");
    expect(rows()).toEqual(["ADMIN_API_KEY"]);

    await user.type(screen.getByLabelText("Filter"), " nothing");
    expect(screen.getByText("No setting matches these filters")).toBeTruthy();
    await user.click(screen.getByRole("button", { name: "Clear filters" }));
    expect(window.location.search).toBe("");
    expect((screen.getByLabelText("Filter") as HTMLInputElement).value).toBe("");
    expect(rows()).toHaveLength(5);
  });

  it("says which permission is missing on a 403", async () => {
    fakeBus((call) =>
      call.url === "/api/v1/configuration"
        ? json(403, { error: { code: "forbidden", message: "no", details: { permission: "configuration.read", role: "sandbox" } } })
        : bus(call),
    );
    openSignedIn("/ui/configuration");
    const alert = await screen.findByText(/lacks the configuration.read permission/);
    expect(alert.closest("[role=alert]")).toBeTruthy();
    expect(screen.queryByRole("table")).toBeNull();
  });
});
