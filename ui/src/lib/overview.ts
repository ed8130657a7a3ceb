/** Counting for the Overview page. */

export interface StatusCounts {
  online: number;
  offline: number;
  unregistered: number;
  total: number;
}

export function countByStatus(sandboxes: readonly { status: string }[]): StatusCounts {
  const counts: StatusCounts = { online: 0, offline: 0, unregistered: 0, total: 0 };
  for (const s of sandboxes) {
    if (s.status === "online" || s.status === "offline" || s.status === "unregistered") counts[s.status] += 1;
    counts.total += 1;
  }
  return counts;
}

export interface ReasonCount {
  reason: string;
  count: number;
}

/** Dead letters by reason, most first (ties by name). */
export function countByReason(deadLetters: readonly { reason: string }[]): ReasonCount[] {
  const map = new Map<string, number>();
  for (const d of deadLetters) map.set(d.reason, (map.get(d.reason) ?? 0) + 1);
  return [...map.entries()]
    .map(([reason, count]) => ({ reason, count }))
    .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
}
