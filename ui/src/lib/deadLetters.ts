/**
 * The Dead letters page's logic: its filters in the URL, the query and body they make, and the bulk flows —
 * a dry-run count first (GET with the filter and limit=1 answers `total`), then replay or purge on
 * confirmation; purging without a filter (`all=true`) asks twice.
 */
import { isIdentifier } from "./filters";

export const DEAD_LETTER_REASONS = [
  "recipient_gone",
  "expired",
  "max_attempts",
  "nacked",
  "undeliverable",
  "no_capable_agent",
  "pair_rate",
  "trace_budget",
] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

export interface DeadLetterFilters {
  reason: DeadLetterReason | null;
  sandbox_id: string | null;
  message_id: string | null;
  /** ISO 8601 (UTC) */
  since: string | null;
  until: string | null;
}

export const NO_DEAD_LETTER_FILTERS: DeadLetterFilters = {
  reason: null,
  sandbox_id: null,
  message_id: null,
  since: null,
  until: null,
};

const FILTER_KEYS = ["reason", "sandbox_id", "message_id", "since", "until"] as const;

function isReason(value: string): value is DeadLetterReason {
  return (DEAD_LETTER_REASONS as readonly string[]).includes(value);
}

/** A time the bus accepts: ISO 8601 that Date can read. Returned as UTC ISO. */
export function normalizeTime(value: string): string | null {
  const zoned = /(Z|[+-]\d\d:?\d\d)$/i.test(value) ? value : `${value}Z`;
  const t = Date.parse(zoned);
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}

/** Read the filters (and the page cursor `after`) from a query string; invalid values are named and ignored. */
export function parseDeadLetterFilters(
  search: URLSearchParams | string,
): DeadLetterFilters & { after: number | null; invalid: string[] } {
  const params = typeof search === "string" ? new URLSearchParams(search) : search;
  const invalid: string[] = [];
  const out: DeadLetterFilters = { ...NO_DEAD_LETTER_FILTERS };
  const reason = params.get("reason")?.trim();
  if (reason) {
    if (isReason(reason)) out.reason = reason;
    else invalid.push("reason");
  }
  for (const key of ["sandbox_id", "message_id"] as const) {
    const v = params.get(key)?.trim();
    if (!v) continue;
    if (isIdentifier(v)) out[key] = v;
    else invalid.push(key);
  }
  for (const key of ["since", "until"] as const) {
    const v = params.get(key)?.trim();
    if (!v) continue;
    const t = normalizeTime(v);
    if (t) out[key] = t;
    else invalid.push(key);
  }
  let after: number | null = null;
  const a = params.get("after");
  if (a) {
    if (/^\d{1,15}$/.test(a)) after = Number(a);
    else invalid.push("after");
  }
  return { ...out, after, invalid };
}

/** Write filters (and the cursor) into the query string, dropping empty ones; other parameters are kept. */
export function applyDeadLetterFilters(
  filters: DeadLetterFilters,
  base?: URLSearchParams | string,
  after: number | null = null,
): URLSearchParams {
  const params = new URLSearchParams(base ?? "");
  for (const key of FILTER_KEYS) params.delete(key);
  params.delete("after");
  for (const key of FILTER_KEYS) {
    const v = filters[key];
    if (v) params.set(key, v);
  }
  if (after !== null && after > 0) params.set("after", String(after));
  return params;
}

export function hasFilter(filters: DeadLetterFilters): boolean {
  return FILTER_KEYS.some((key) => filters[key] !== null);
}

/** The filter as query parameters / body fields, without the empty ones. */
export function filterQuery(filters: DeadLetterFilters): Partial<Record<(typeof FILTER_KEYS)[number], string>> {
  const out: Partial<Record<(typeof FILTER_KEYS)[number], string>> = {};
  for (const key of FILTER_KEYS) {
    const v = filters[key];
    if (v) out[key] = v;
  }
  return out;
}

/** A `datetime-local` input's value (the browser's local time) as UTC ISO, and back. */
export function localInputToIso(value: string): string | null {
  if (!value) return null;
  const t = new Date(value).getTime();
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}

export function isoToLocalInput(iso: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The bulk replay body caps at 10000 per call. */
export const MAX_BULK_REPLAY = 10_000;

// ---- bulk flows ----

export type BulkKind = "replay" | "purge";

export type BulkState =
  | { step: "idle" }
  | { step: "counting" }
  /** The dry run answered: `total` match. For a purge without a filter, `needsAll` asks a second confirmation. */
  | { step: "confirm"; total: number; needsAll: boolean }
  /** Purging every dead letter: the second confirmation. */
  | { step: "confirm-all"; total: number }
  | { step: "running"; total: number }
  | { step: "done"; done: number }
  | { step: "error"; error: unknown };

export type BulkAction =
  | { type: "start" }
  | { type: "counted"; total: number; filtered: boolean }
  | { type: "confirm" }
  | { type: "finished"; done: number }
  | { type: "failed"; error: unknown }
  | { type: "reset" };

/** The flow of one bulk action. `kind` decides whether confirming a purge without a filter asks again. */
export function bulkReducer(kind: BulkKind) {
  return (state: BulkState, action: BulkAction): BulkState => {
    switch (action.type) {
      case "start":
        return { step: "counting" };
      case "counted":
        if (state.step !== "counting") return state;
        return { step: "confirm", total: action.total, needsAll: kind === "purge" && !action.filtered };
      case "confirm":
        if (state.step === "confirm") {
          if (state.total === 0) return state;
          return state.needsAll ? { step: "confirm-all", total: state.total } : { step: "running", total: state.total };
        }
        if (state.step === "confirm-all") return { step: "running", total: state.total };
        return state;
      case "finished":
        return state.step === "running" ? { step: "done", done: action.done } : state;
      case "failed":
        return { step: "error", error: action.error };
      case "reset":
        return { step: "idle" };
    }
  };
}

/** The body of POST /dead-letters/replay: the filter plus how many to replay at most. */
export function replayBody(filters: DeadLetterFilters, limit: number): ReturnType<typeof filterQuery> & { limit: number } {
  return { ...filterQuery(filters), limit: Math.max(1, Math.min(MAX_BULK_REPLAY, Math.floor(limit))) };
}

/** The query of DELETE /dead-letters: the filter, or `all=true` when there is none. */
export function purgeQuery(filters: DeadLetterFilters): ReturnType<typeof filterQuery> & { all?: true } {
  return hasFilter(filters) ? filterQuery(filters) : { all: true };
}
