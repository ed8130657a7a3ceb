/** The Sandboxes page's filters, kept in the URL query string (`?workspace=demo&status=online`). */

export const SANDBOX_STATUSES = ["online", "offline", "unregistered"] as const;
export type SandboxStatus = (typeof SANDBOX_STATUSES)[number];

export interface SandboxFilters {
  workspace: string | null;
  status: SandboxStatus | null;
}

/** The bus's identifier syntax (workspace names, sandbox ids). */
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9_.:@-]*$/;

export function isIdentifier(value: string): boolean {
  return value.length >= 1 && value.length <= 128 && IDENTIFIER.test(value);
}

function isStatus(value: string): value is SandboxStatus {
  return (SANDBOX_STATUSES as readonly string[]).includes(value);
}

/**
 * Read the filters from a query string. Values that cannot be valid (an unknown status, a workspace that is
 * not an identifier) are ignored rather than sent to the bus; `invalid` names them so the page can say so.
 */
export function parseSandboxFilters(search: URLSearchParams | string): SandboxFilters & { invalid: string[] } {
  const params = typeof search === "string" ? new URLSearchParams(search) : search;
  const invalid: string[] = [];
  let workspace: string | null = null;
  let status: SandboxStatus | null = null;
  const ws = params.get("workspace")?.trim();
  if (ws) {
    if (isIdentifier(ws)) workspace = ws;
    else invalid.push("workspace");
  }
  const st = params.get("status")?.trim().toLowerCase();
  if (st && st !== "any") {
    if (isStatus(st)) status = st;
    else invalid.push("status");
  }
  return { workspace, status, invalid };
}

/**
 * Write the filters into `base` (other parameters are kept), leaving out the empty ones so the default
 * view has a clean URL.
 */
export function applySandboxFilters(filters: SandboxFilters, base?: URLSearchParams | string): URLSearchParams {
  const params = new URLSearchParams(base ?? "");
  params.delete("workspace");
  params.delete("status");
  if (filters.workspace) params.set("workspace", filters.workspace);
  if (filters.status) params.set("status", filters.status);
  return params;
}

/** Does a sandbox pass the filters? */
export function matchesFilters(
  sandbox: { workspace: string; status: string },
  filters: SandboxFilters,
): boolean {
  if (filters.workspace !== null && sandbox.workspace !== filters.workspace) return false;
  if (filters.status !== null && sandbox.status !== filters.status) return false;
  return true;
}
