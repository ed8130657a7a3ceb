/** Counting events into fixed buckets for the message-rate sparkline. */

export const WINDOW_MS = 5 * 60 * 1000;
export const BUCKET_MS = 5 * 1000;

export interface Buckets {
  /** Start of the first bucket (ms since the epoch); bucket i covers [start + i·size, start + (i+1)·size). */
  start: number;
  size: number;
  /** Events per bucket, oldest first; null for a bucket that ends before `since` (nothing was watched then). */
  counts: (number | null)[];
}

/**
 * Count `times` (ms since the epoch) into buckets of `size` ms covering the `windowMs` up to `now`.
 * Bucket edges are aligned to multiples of `size`, so bars do not shift as time passes; the last bucket is
 * the current, partial one. Events outside the window are ignored.
 */
export function bucketize(
  times: readonly number[],
  now: number,
  since: number | null = null,
  windowMs: number = WINDOW_MS,
  size: number = BUCKET_MS,
): Buckets {
  const n = Math.max(1, Math.round(windowMs / size));
  const end = (Math.floor(now / size) + 1) * size;
  const start = end - n * size;
  const counts: (number | null)[] = [];
  for (let i = 0; i < n; i++) {
    const bucketEnd = start + (i + 1) * size;
    counts.push(since !== null && bucketEnd <= since ? null : 0);
  }
  for (const t of times) {
    if (t < start || t >= end) continue;
    const i = Math.floor((t - start) / size);
    const c = counts[i];
    counts[i] = (c ?? 0) + 1;
  }
  return { start, size, counts };
}

/**
 * Keeps the arrival times of the last `windowMs` of events. Events may repeat (the bus's events are best
 * effort): one recorded with an `id` already seen within the window is not counted again.
 */
export class EventWindow {
  private times: number[] = [];
  private readonly seen = new Map<string, number>();

  constructor(readonly windowMs: number = WINDOW_MS + BUCKET_MS) {}

  /** Record an event that arrived at `time`; false when `id` was already counted. */
  record(time: number, id?: string): boolean {
    if (id !== undefined) {
      if (this.seen.has(id)) return false;
      this.seen.set(id, time);
    }
    // Arrival times only grow, but a clock set back must not break the order the pruning relies on.
    const last = this.times[this.times.length - 1];
    this.times.push(last !== undefined && time < last ? last : time);
    return true;
  }

  /** The times still inside the window at `now` (older ones are dropped). */
  snapshot(now: number): readonly number[] {
    const cutoff = now - this.windowMs;
    let drop = 0;
    while (drop < this.times.length && (this.times[drop] as number) < cutoff) drop++;
    if (drop > 0) this.times = this.times.slice(drop);
    for (const [id, t] of this.seen) {
      if (t >= cutoff) break; // insertion order is arrival order
      this.seen.delete(id);
    }
    return this.times;
  }
}

/** Total and peak of a bucket series (null buckets ignored). */
export function summarize(counts: readonly (number | null)[]): { total: number; peak: number } {
  let total = 0;
  let peak = 0;
  for (const c of counts) {
    if (c === null) continue;
    total += c;
    if (c > peak) peak = c;
  }
  return { total, peak };
}
