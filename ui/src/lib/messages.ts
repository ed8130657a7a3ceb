/** Small helpers for messages and their delivery reports. */
import { parseIso } from "./format";

/** `metadata.trace` as the bus writes it, when present. */
export function traceOf(metadata: Record<string, unknown> | null | undefined): { traceId: string; parentId: string | null; hops: number | null } | null {
  const trace = metadata?.trace;
  if (typeof trace !== "object" || trace === null) return null;
  const t = trace as Record<string, unknown>;
  if (typeof t.trace_id !== "string" || t.trace_id === "") return null;
  return {
    traceId: t.trace_id,
    parentId: typeof t.parent_id === "string" ? t.parent_id : null,
    hops: typeof t.hops === "number" ? t.hops : null,
  };
}

/** Milliseconds between two ISO times, or null when either is missing. */
export function between(from: string | null | undefined, to: string | null | undefined): number | null {
  if (!from || !to) return null;
  const a = parseIso(from);
  const b = parseIso(to);
  return Number.isNaN(a) || Number.isNaN(b) ? null : b - a;
}

/** 0.4 ms, 12 ms, 1.3 s, 2 min 5 s. */
export function formatDuration(ms: number | null): string {
  if (ms === null) return "—";
  if (ms < 0) return "0 ms";
  if (ms < 10) return `${Math.round(ms * 10) / 10} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Math.round(ms / 100) / 10} s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  if (m < 60) return s ? `${m} min ${s} s` : `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
