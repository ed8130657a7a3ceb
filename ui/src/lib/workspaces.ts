/** The Workspaces page's form: a workspace's settings to text fields and back, checked as the bus checks them. */
import { isIdentifier } from "./filters";

export interface WorkspaceForm {
  id: string;
  name: string;
  description: string;
  default_image: string;
  memory_mb: string;
  cpus: string;
  pids: string;
  idle_stop_minutes: string;
}

export const EMPTY_WORKSPACE_FORM: WorkspaceForm = {
  id: "",
  name: "",
  description: "",
  default_image: "",
  memory_mb: "",
  cpus: "",
  pids: "",
  idle_stop_minutes: "",
};

export interface WorkspaceSettings {
  default_image?: string;
  default_limits?: { memory_mb?: number; cpus?: number; pids?: number };
  idle_stop_minutes?: number | null;
}

function text(value: unknown): string {
  return typeof value === "number" || typeof value === "string" ? String(value) : "";
}

export function workspaceToForm(ws: { id: string; name: string; description: string; settings: Record<string, unknown> }): WorkspaceForm {
  const s = ws.settings;
  const limits = (typeof s.default_limits === "object" && s.default_limits !== null ? s.default_limits : {}) as Record<string, unknown>;
  return {
    id: ws.id,
    name: ws.name,
    description: ws.description,
    default_image: text(s.default_image),
    memory_mb: text(limits.memory_mb),
    cpus: text(limits.cpus),
    pids: text(limits.pids),
    idle_stop_minutes: text(s.idle_stop_minutes),
  };
}

const IMAGE = /^[a-z0-9][a-z0-9._/:@-]*$/;

function num(value: string, field: string, errors: Record<string, string>, opts: { min: number; max: number; integer: boolean }): number | undefined {
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
 * The body fields for POST /workspaces (with `id`) or PUT /workspaces/{id}, or the errors per field. A PUT
 * replaces the settings as a whole, so every setting the form shows is sent.
 */
export function formToWorkspace(
  form: WorkspaceForm,
  creating: boolean,
): { body: { id?: string; name?: string; description: string; settings: WorkspaceSettings }; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  const id = form.id.trim();
  if (creating && !isIdentifier(id)) errors.id = "required: letters, digits and _ . : @ - (starting with a letter or digit)";
  const name = form.name.trim();
  if (name.length > 128) errors.name = "at most 128 characters";
  if (form.description.length > 2000) errors.description = "at most 2000 characters";
  const settings: WorkspaceSettings = {};
  const image = form.default_image.trim();
  if (image) {
    if (image.length > 255 || !IMAGE.test(image)) errors.default_image = "an image reference such as aintandem/collab-agent:1 (lower case)";
    else settings.default_image = image;
  }
  const limits: NonNullable<WorkspaceSettings["default_limits"]> = {};
  const memory = num(form.memory_mb, "memory_mb", errors, { min: 8, max: 1048576, integer: true });
  const cpus = num(form.cpus, "cpus", errors, { min: 0.01, max: 1024, integer: false });
  const pids = num(form.pids, "pids", errors, { min: 8, max: 4194304, integer: true });
  if (memory !== undefined) limits.memory_mb = memory;
  if (cpus !== undefined) limits.cpus = cpus;
  if (pids !== undefined) limits.pids = pids;
  if (Object.keys(limits).length > 0) settings.default_limits = limits;
  const idle = num(form.idle_stop_minutes, "idle_stop_minutes", errors, { min: 0.05, max: 10080, integer: false });
  if (idle !== undefined) settings.idle_stop_minutes = idle;
  const body: { id?: string; name?: string; description: string; settings: WorkspaceSettings } = { description: form.description, settings };
  if (creating) body.id = id;
  if (name) body.name = name;
  return { body, errors };
}

/** The bus's validation details (field → messages, possibly nested) as "field.sub: message" lines. */
export function flattenDetails(details: unknown, prefix = ""): string[] {
  if (Array.isArray(details)) return [`${prefix || "body"}: ${details.map(String).join(" ")}`];
  if (typeof details !== "object" || details === null) return details === undefined ? [] : [`${prefix}: ${String(details)}`];
  return Object.entries(details as Record<string, unknown>).flatMap(([k, v]) => flattenDetails(v, prefix ? `${prefix}.${k}` : k));
}
