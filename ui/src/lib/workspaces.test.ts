import { describe, expect, it } from "vitest";
import { EMPTY_WORKSPACE_FORM, flattenDetails, formToWorkspace, workspaceToForm } from "./workspaces";

describe("workspace form", () => {
  it("round-trips a workspace's settings", () => {
    const ws = {
      id: "research",
      name: "Research",
      description: "papers",
      settings: { default_image: "aintandem/collab-agent", default_limits: { memory_mb: 256, cpus: 0.5 }, idle_stop_minutes: 5 },
    };
    const form = workspaceToForm(ws);
    expect(form).toMatchObject({ default_image: "aintandem/collab-agent", memory_mb: "256", cpus: "0.5", pids: "", idle_stop_minutes: "5" });
    expect(formToWorkspace(form, false)).toEqual({
      body: { name: "Research", description: "papers", settings: ws.settings },
      errors: {},
    });
  });

  it("creates with an id and only the settings given", () => {
    expect(formToWorkspace({ ...EMPTY_WORKSPACE_FORM, id: " team " }, true)).toEqual({
      body: { id: "team", description: "", settings: {} },
      errors: {},
    });
  });

  it("names each invalid field", () => {
    const { errors } = formToWorkspace(
      { ...EMPTY_WORKSPACE_FORM, id: "no way", default_image: "UPPER", memory_mb: "4", cpus: "x", pids: "9.5", idle_stop_minutes: "0" },
      true,
    );
    expect(Object.keys(errors).sort()).toEqual(["cpus", "default_image", "id", "idle_stop_minutes", "memory_mb", "pids"]);
    expect(formToWorkspace({ ...EMPTY_WORKSPACE_FORM }, false).errors).toEqual({});
  });

  it("flattens the bus's nested validation details", () => {
    expect(flattenDetails({ settings: { default_image: ["must be an image reference"] }, id: ["Missing."] })).toEqual([
      "settings.default_image: must be an image reference",
      "id: Missing.",
    ]);
  });
});
