/**
 * The mailbox browser's logic: its place in the mailbox (`since`, the last seq before the page) and page size,
 * kept in the URL (`?since=40&limit=50`), whether there is more after a page, and the optional facts of an
 * entry (a redelivery's attempt count) read defensively.
 */

export const PAGE_SIZES = [25, 50, 100, 200] as const;
export const DEFAULT_PAGE_SIZE = 50;
/** The bus takes at most this many entries per call. */
export const MAX_PAGE_SIZE = 1000;

export interface MailboxParams {
  /** Entries with seq > since are shown; 0 for the start of the mailbox. */
  since: number;
  limit: number;
  /** Parameters of the address that could not be used (ignored). */
  invalid: string[];
}

function wholeNumber(value: string | null): number | null {
  if (value === null || !/^\d{1,16}$/.test(value.trim())) return null;
  const n = Number(value.trim());
  return Number.isSafeInteger(n) ? n : null;
}

export function parseMailboxParams(search: URLSearchParams | string): MailboxParams {
  const params = typeof search === "string" ? new URLSearchParams(search) : search;
  const invalid: string[] = [];
  let since = 0;
  let limit = DEFAULT_PAGE_SIZE;
  const rawSince = params.get("since");
  if (rawSince !== null && rawSince.trim() !== "") {
    const n = wholeNumber(rawSince);
    if (n === null) invalid.push("since");
    else since = n;
  }
  const rawLimit = params.get("limit");
  if (rawLimit !== null && rawLimit.trim() !== "") {
    const n = wholeNumber(rawLimit);
    if (n === null || n < 1 || n > MAX_PAGE_SIZE) invalid.push("limit");
    else limit = n;
  }
  return { since, limit, invalid };
}

/** Write `since` and `limit` into `base` (other parameters kept), leaving out the defaults for a clean URL. */
export function applyMailboxParams(p: { since: number; limit: number }, base?: URLSearchParams | string): URLSearchParams {
  const params = new URLSearchParams(base ?? "");
  params.delete("since");
  params.delete("limit");
  if (p.since > 0) params.set("since", String(p.since));
  if (p.limit !== DEFAULT_PAGE_SIZE) params.set("limit", String(p.limit));
  return params;
}

export interface PageFacts {
  /** seq of the first and last entry shown, or null for an empty page. */
  first: number | null;
  last: number | null;
  /** Are there entries after this page right now (the head is beyond it)? */
  more: boolean;
  /** Is the cursor past the mailbox's head (e.g. the database was reset)? */
  beyondHead: boolean;
}

export function pageFacts(page: { since: number; head_seq: number; next_since: number; entries: readonly { seq: number }[] }): PageFacts {
  const first = page.entries[0]?.seq ?? null;
  const last = page.entries.at(-1)?.seq ?? null;
  return {
    first,
    last,
    more: page.next_since < page.head_seq,
    beyondHead: page.since > page.head_seq,
  };
}

/** How many times the bus tried to deliver the entry, if the entry says (the REST entry has no such field today). */
export function entryAttempts(entry: object): number | null {
  const e = entry as Record<string, unknown>;
  const v = e.attempts ?? e.attempt;
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** A message's timestamp (unix seconds) as an ISO time, or null. */
export function unixToIso(seconds: unknown): string | null {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return null;
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}
