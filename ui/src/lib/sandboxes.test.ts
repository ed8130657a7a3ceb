import { describe, expect, it } from "vitest";
import {
  concernsSandbox,
  EMPTY_CREATE_FORM,
  formatLimits,
  formToCreateSandbox,
  lifecycleActions,
  readSpec,
} from "./sandboxes";

describe("lifecycle actions", () => {
  it("offers Stop, not Start, while it runs as asked, and Start, not Stop, once stopped", () => {
    expect(lifecycleActions({ state: "running", desired_state: "running" })).toEqual({ start: false, stop: true, delete: true });
    expect(lifecycleActions({ state: "starting", desired_state: "running" })).toEqual({ start: false, stop: true, delete: true });
    expect(lifecycleActions({ state: "creating", desired_state: "running" })).toEqual({ start: false, stop: true, delete: true });
    expect(lifecycleActions({ state: "stopped", desired_state: "stopped" })).toEqual({ start: true, stop: false, delete: true });
    expect(lifecycleActions({ state: "created", desired_state: "stopped" })).toEqual({ start: true, stop: false, delete: true });
  });

  it("lets a command be reversed on the way, and either be tried again after an error", () => {
    // stopping: still running, asked to stop
    expect(lifecycleActions({ state: "running", desired_state: "stopped" })).toEqual({ start: true, stop: false, delete: true });
    // woken by a message: still stopped, asked to run
    expect(lifecycleActions({ state: "stopped", desired_state: "running" })).toEqual({ start: false, stop: true, delete: true });
    expect(lifecycleActions({ state: "stopping", desired_state: "stopped" })).toEqual({ start: true, stop: false, delete: true });
    expect(lifecycleActions({ state: "error", desired_state: "running" })).toEqual({ start: true, stop: true, delete: true });
  });

  it("takes no command while being deleted", () => {
    const none = { start: false, stop: false, delete: false };
    expect(lifecycleActions({ state: "running", desired_state: "deleted" })).toEqual(none);
    expect(lifecycleActions({ state: "deleting", desired_state: "deleted" })).toEqual(none);
    expect(lifecycleActions({ state: "deleted", desired_state: "deleted" })).toEqual(none);
  });
});

describe("events", () => {
  it("concern the sandbox they name, and a reconnect concerns every one", () => {
    const ev = (data: Record<string, unknown>) => ({ event: "sandbox.state_changed", data, timestamp: 0, receivedAt: 0 });
    expect(concernsSandbox(ev({ sandbox_id: "a" }), "a")).toBe(true);
    expect(concernsSandbox(ev({ sandbox_id: "b" }), "a")).toBe(false);
    expect(concernsSandbox(null, "a")).toBe(true);
  });
});

describe("spec", () => {
  it("reads image, command, limits, network and only the names of the environment", () => {
    const spec = readSpec({
      image: "busybox:1",
      command: ["sh", "-c", "echo hi"],
      env: { TOKEN: "secret", A: "1" },
      limits: { memory_mb: 256, cpus: 0.5, pids: "lots" },
      network_mode: "none",
    });
    expect(spec).toEqual({
      image: "busybox:1",
      command: ["sh", "-c", "echo hi"],
      limits: { memory_mb: 256, cpus: 0.5 },
      networkMode: "none",
      envNames: ["A", "TOKEN"],
    });
    expect(formatLimits(spec.limits)).toBe("256 MiB memory · 0.5 CPU");
    expect(formatLimits({})).toBe("none");
    expect(readSpec(null)).toEqual({ image: null, command: null, limits: {}, networkMode: null, envNames: [] });
  });
});

describe("create form", () => {
  it("leaves out what is empty so the bus uses its defaults", () => {
    expect(formToCreateSandbox({ ...EMPTY_CREATE_FORM, workspace: "demo" })).toEqual({
      body: { workspace: "demo", start: true },
      errors: {},
    });
  });

  it("builds the whole body", () => {
    const { body, errors } = formToCreateSandbox({
      sandbox_id: " sb-1 ",
      workspace: "demo",
      image: "busybox:1",
      command: "sh\n-c\n  echo a=b  \n",
      env: "A=1\nB=x=y\n\n",
      memory_mb: "128",
      cpus: "0.25",
      pids: "64",
      network_mode: "none",
      start: false,
    });
    expect(errors).toEqual({});
    expect(body).toEqual({
      sandbox_id: "sb-1",
      workspace: "demo",
      image: "busybox:1",
      command: ["sh", "-c", "echo a=b"],
      env: { A: "1", B: "x=y" },
      limits: { memory_mb: 128, cpus: 0.25, pids: 64 },
      network_mode: "none",
      start: false,
    });
  });

  it("names each field the bus would refuse", () => {
    const { errors } = formToCreateSandbox({
      ...EMPTY_CREATE_FORM,
      sandbox_id: "no way",
      workspace: "",
      image: "Upper/Case",
      env: "BUS_TOKEN=x\nnot a pair",
      memory_mb: "4",
      cpus: "0",
      pids: "9.5",
      network_mode: "overlay",
    });
    expect(Object.keys(errors).sort()).toEqual(["cpus", "env", "image", "memory_mb", "network_mode", "pids", "sandbox_id", "workspace"]);
    expect(errors.env).toMatch(/BUS_TOKEN is set by the bus itself/);
    expect(errors.env).toMatch(/"not a pair" is not NAME=value/);
    expect(formToCreateSandbox({ ...EMPTY_CREATE_FORM, sandbox_id: "broadcast" }).errors.sandbox_id).toMatch(/reserved/);
  });
});
