/**
 * A trace (GET /api/v1/traces/{id}: a tree of messages) laid out as a timeline: one row per message in
 * conversation order (depth first, children by time), each with its hops — accepted → routed, then per
 * recipient delivered → acked — and its dead letters, placed on one time axis as fractions 0…1.
 */
import type { Schemas } from "@/api/client";
import { parseIso } from "./format";

export type TraceNode = Schemas["TraceNode"];

export interface TimelineHop {
  recipient: string;
  seq: number;
  state: string;
  attempts: number;
  /** fractions of the axis */
  deliveredAt: number;
  ackedAt: number | null;
  /** ms from acceptance to the mailbox, and from the mailbox to the ACK */
  deliverMs: number | null;
  ackMs: number | null;
  failed: boolean;
}

export interface TimelineFailure {
  recipient: string | null;
  reason: string;
  error: string | null;
  at: number;
}

export interface TimelineRow {
  id: string;
  depth: number;
  parentId: string | null;
  type: string;
  from: string;
  to: string;
  topic: string | null;
  status: string;
  acceptedAt: number;
  routedAt: number | null;
  routeMs: number | null;
  hops: TimelineHop[];
  failures: TimelineFailure[];
  /** dead, or a dead letter, or a delivery that is dead */
  failed: boolean;
}

export interface Timeline {
  rows: TimelineRow[];
  /** ms since the epoch of the axis's ends */
  start: number;
  end: number;
  durationMs: number;
}

/** The children of a node (the document types them loosely), oldest first. */
export function childrenOf(node: TraceNode): TraceNode[] {
  const kids = (node.children ?? []) as unknown as TraceNode[];
  return [...kids].sort((a, b) => parseIso(a.accepted_at) - parseIso(b.accepted_at));
}

/** Depth-first, children in time order. */
export function flatten(roots: readonly TraceNode[]): { node: TraceNode; depth: number }[] {
  const out: { node: TraceNode; depth: number }[] = [];
  const visit = (node: TraceNode, depth: number) => {
    out.push({ node, depth });
    for (const child of childrenOf(node)) visit(child, depth + 1);
  };
  for (const root of [...roots].sort((a, b) => parseIso(a.accepted_at) - parseIso(b.accepted_at))) visit(root, 0);
  return out;
}

function t(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const v = parseIso(iso);
  return Number.isNaN(v) ? null : v;
}

export function layoutTimeline(roots: readonly TraceNode[]): Timeline {
  const flat = flatten(roots);
  const times: number[] = [];
  for (const { node } of flat) {
    for (const v of [node.accepted_at, node.routed_at, ...node.deliveries.flatMap((d) => [d.delivered_at, d.acked_at]), ...node.dead_letters.map((d) => d.created_at)]) {
      const x = t(v);
      if (x !== null) times.push(x);
    }
  }
  const start = times.length ? Math.min(...times) : 0;
  const end = times.length ? Math.max(...times) : 0;
  const span = Math.max(1, end - start);
  const pos = (ms: number) => (ms - start) / span;

  const rows = flat.map(({ node, depth }): TimelineRow => {
    const accepted = t(node.accepted_at) ?? start;
    const routed = t(node.routed_at);
    const hops = node.deliveries.map((d): TimelineHop => {
      const delivered = t(d.delivered_at) ?? accepted;
      const acked = t(d.acked_at);
      return {
        recipient: d.sandbox_id,
        seq: d.seq,
        state: d.state,
        attempts: d.attempts,
        deliveredAt: pos(delivered),
        ackedAt: acked === null ? null : pos(acked),
        deliverMs: delivered - accepted,
        ackMs: acked === null ? null : acked - delivered,
        failed: d.state === "dead",
      };
    });
    const failures = node.dead_letters.map((d) => ({
      recipient: d.sandbox_id,
      reason: d.reason,
      error: d.last_error,
      at: pos(t(d.created_at) ?? accepted),
    }));
    const m = node.message;
    return {
      id: m.message_id,
      depth,
      parentId: node.parent_id,
      type: m.message_type,
      from: m.from_sandbox,
      to: m.to_sandbox,
      topic: m.topic ?? null,
      status: node.status,
      acceptedAt: pos(accepted),
      routedAt: routed === null ? null : pos(routed),
      routeMs: routed === null ? null : routed - accepted,
      hops,
      failures,
      failed: node.status === "dead" || failures.length > 0 || hops.some((h) => h.failed),
    };
  });
  return { rows, start, end, durationMs: end - start };
}

// ---------- the traces list's filters ----------

export interface TraceFilters {
  sandbox: string | null;
  /** ISO 8601 UTC */
  since: string | null;
}

export function parseTraceFilters(search: URLSearchParams | string, isId: (v: string) => boolean): TraceFilters & { invalid: string[] } {
  const params = typeof search === "string" ? new URLSearchParams(search) : search;
  const invalid: string[] = [];
  let sandbox: string | null = null;
  let since: string | null = null;
  const s = params.get("sandbox")?.trim();
  if (s) {
    if (isId(s)) sandbox = s;
    else invalid.push("sandbox");
  }
  const si = params.get("since")?.trim();
  if (si) {
    const zoned = /(Z|[+-]\d\d:?\d\d)$/i.test(si) ? si : `${si}Z`;
    const v = Date.parse(zoned);
    if (Number.isNaN(v)) invalid.push("since");
    else since = new Date(v).toISOString();
  }
  return { sandbox, since, invalid };
}

export function applyTraceFilters(f: TraceFilters, base?: URLSearchParams | string): URLSearchParams {
  const params = new URLSearchParams(base ?? "");
  params.delete("sandbox");
  params.delete("since");
  if (f.sandbox) params.set("sandbox", f.sandbox);
  if (f.since) params.set("since", f.since);
  return params;
}
