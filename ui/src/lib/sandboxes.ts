/**
 * One sandbox's page: which lifecycle commands apply to a managed sandbox in its current state, which events
 * concern it, what its container spec says, and the "Create sandbox" form ↔ `POST /api/v1/sandboxes` body,
 * checked as the bus checks it (app/schemas/managed.py).
 */
import type { BusEvent } from "./eventSocket";
import { isIdentifier } from "./filters";

/** Events that may change what the sandbox pages show (registration, liveness, the container's state). */
export const SANDBOX_PAGE_EVENTS = [
  "sandbox.registered",
  "sandbox.unregistered",
  "sandbox.online",
  "sandbox.offline",
  "sandbox.connected",
  "sandbox.disconnected",
  "sandbox.state_changed",
  "sandbox.waking",
] as const;

/** Does `event` concern sandbox `id`? A null event (the socket came back and may have missed some) does. */
export function concernsSandbox(event: BusEvent | null, id: string): boolean {
  return event === null || event.data.sandbox_id === id;
}

/** The container states the bus reports (sandbox.state_changed, GET …/status). */
export const CONTAINER_STATES = [
  "creating",
  "created",
  "starting",
  "running",
  "stopping",
  "stopped",
  "deleting",
  "deleted",
  "error",
] as const;

/** States on the way somewhere: the lifecycle task is still working. */
export const TRANSITIONAL_STATES: readonly string[] = ["creating", "starting", "stopping", "deleting"];

export interface Lifecycle {
  state: string | null | undefined;
  desired_state: string | null | undefined;
}

export interface LifecycleActions {
  /** Ask it to run: not when it already runs (or is on its way) as asked. */
  start: boolean;
  /** Ask it to stop: not when it is stopped (or on its way) as asked. */
  stop: boolean;
  /** Delete it: not once a delete was asked. */
  delete: boolean;
}

/**
 * The commands that make sense now: not the one already asked (no Start while it runs or is on its way to), but
 * the other one, to change one's mind on the way. A sandbox in `error` can be asked again either way (a new
 * command clears the reason and the bus tries again); one being deleted takes no command.
 */
export function lifecycleActions({ state, desired_state: desired }: Lifecycle): LifecycleActions {
  if (desired === "deleted" || state === "deleting" || state === "deleted") return { start: false, stop: false, delete: false };
  const failed = state === "error";
  return {
    start: desired !== "running" || failed,
    stop: desired !== "stopped" || failed,
    delete: true,
  };
}

export interface ContainerLimits {
  memory_mb?: number;
  cpus?: number;
  pids?: number;
}

/** What a managed sandbox's `spec` says, read defensively (the document types it as an open object). */
export interface SpecSummary {
  image: string | null;
  command: string[] | null;
  limits: ContainerLimits;
  networkMode: string | null;
  /** Variable names only: their values may be secrets. */
  envNames: string[];
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

export function readSpec(spec: unknown): SpecSummary {
  const s = record(spec);
  const limits = record(s.limits);
  const out: ContainerLimits = {};
  for (const key of ["memory_mb", "cpus", "pids"] as const) {
    const v = limits[key];
    if (typeof v === "number" && Number.isFinite(v)) out[key] = v;
  }
  return {
    image: typeof s.image === "string" ? s.image : null,
    command: Array.isArray(s.command) ? s.command.map(String) : null,
    limits: out,
    networkMode: typeof s.network_mode === "string" ? s.network_mode : null,
    envNames: Object.keys(record(s.env)).sort((a, b) => a.localeCompare(b)),
  };
}

/** "512 MiB memory · 0.5 CPU · 128 processes", or "none" when no limit is set. */
export function formatLimits(limits: ContainerLimits): string {
  const parts: string[] = [];
  if (limits.memory_mb !== undefined) parts.push(`${limits.memory_mb} MiB memory`);
  if (limits.cpus !== undefined) parts.push(`${limits.cpus} CPU`);
  if (limits.pids !== undefined) parts.push(`${limits.pids} processes`);
  return parts.length ? parts.join(" · ") : "none";
}

// ---------- the create form ----------

export const NETWORK_MODES = ["host", "none", "bridge"] as const;

/** Environment variables the bus sets itself (app.services.managed.RESERVED_ENV). */
export const RESERVED_ENV = ["SANDBOX_ID", "WORKSPACE", "COLLABORATION_BUS_URL", "BUS_TOKEN"] as const;

/** Ids that mean something else to the bus: a broadcast, capability routing. */
const RESERVED_IDS = ["broadcast", "any"];

export interface CreateSandboxForm {
  sandbox_id: string;
  workspace: string;
  image: string;
  /** One argument per line. */
  command: string;
  /** NAME=value, one per line. */
  env: string;
  memory_mb: string;
  cpus: string;
  pids: string;
  /** "" for the bus's default. */
  network_mode: string;
  start: boolean;
}

export const EMPTY_CREATE_FORM: CreateSandboxForm = {
  sandbox_id: "",
  workspace: "default",
  image: "",
  command: "",
  env: "",
  memory_mb: "",
  cpus: "",
  pids: "",
  network_mode: "",
  start: true,
};

export interface CreateSandboxBody {
  sandbox_id?: string;
  workspace: string;
  image?: string;
  command?: string[];
  env?: Record<string, string>;
  limits?: ContainerLimits;
  network_mode?: (typeof NETWORK_MODES)[number];
  start: boolean;
}

const IMAGE = /^[a-z0-9][a-z0-9._/:@-]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

function num(
  value: string,
  field: string,
  errors: Record<string, string>,
  opts: { min: number; max: number; integer: boolean },
): number | undefined {
  const v = value.trim();
  if (v === "") return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || n < opts.min || n > opts.max) {
    errors[field] = `${opts.integer ? "a whole number" : "a number"} from ${opts.min} to ${opts.max}`;
    return undefined;
  }
  return n;
}

/**
 * The body of `POST /api/v1/sandboxes`, or the errors per field. Empty fields are left out, so the bus fills in
 * its defaults: a generated id, the workspace's (or the bus's) image and limits, its network mode.
 */
export function formToCreateSandbox(form: CreateSandboxForm): { body: CreateSandboxBody; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const body: CreateSandboxBody = { workspace: form.workspace.trim(), start: form.start };

  const id = form.sandbox_id.trim();
  if (id) {
    if (!isIdentifier(id)) errors.sandbox_id = "letters, digits and _ . : @ - (starting with a letter or digit), at most 128";
    else if (RESERVED_IDS.includes(id)) errors.sandbox_id = `"${id}" is reserved (broadcast and capability routing)`;
    else body.sandbox_id = id;
  }
  if (!isIdentifier(body.workspace)) errors.workspace = "choose a workspace";

  const image = form.image.trim();
  if (image) {
    if (image.length > 255 || !IMAGE.test(image)) errors.image = "an image reference such as aintandem/collab-agent:1 (lower case)";
    else body.image = image;
  }

  const command = form.command.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  if (command.length > 256) errors.command = "at most 256 arguments";
  else if (command.some((arg) => arg.length > 8192)) errors.command = "an argument is longer than 8192 characters";
  else if (command.length > 0) body.command = command;

  const env: Record<string, string> = {};
  const envErrors: string[] = [];
  for (const raw of form.env.split("\n")) {
    if (raw.trim() === "") continue;
    const eq = raw.indexOf("=");
    const name = (eq < 0 ? raw : raw.slice(0, eq)).trim();
    if (eq < 0 || !ENV_NAME.test(name)) envErrors.push(`"${raw.trim()}" is not NAME=value`);
    else if ((RESERVED_ENV as readonly string[]).includes(name)) envErrors.push(`${name} is set by the bus itself`);
    else env[name] = raw.slice(eq + 1);
  }
  if (envErrors.length > 0) errors.env = envErrors.join("; ");
  else if (Object.keys(env).length > 200) errors.env = "at most 200 variables";
  else if (Object.keys(env).length > 0) body.env = env;

  const limits: ContainerLimits = {};
  const memory = num(form.memory_mb, "memory_mb", errors, { min: 8, max: 1048576, integer: true });
  const cpus = num(form.cpus, "cpus", errors, { min: 0.01, max: 1024, integer: false });
  const pids = num(form.pids, "pids", errors, { min: 8, max: 4194304, integer: true });
  if (memory !== undefined) limits.memory_mb = memory;
  if (cpus !== undefined) limits.cpus = cpus;
  if (pids !== undefined) limits.pids = pids;
  if (Object.keys(limits).length > 0) body.limits = limits;

  if (form.network_mode) {
    if ((NETWORK_MODES as readonly string[]).includes(form.network_mode)) body.network_mode = form.network_mode as CreateSandboxBody["network_mode"];
    else errors.network_mode = `one of ${NETWORK_MODES.join(", ")}`;
  }
  return { body, errors };
}
