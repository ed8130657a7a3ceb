/** Reconnect back-off: exponential, capped, with jitter so many tabs do not reconnect in step. */

export interface BackoffOptions {
  /** Delay before the first retry, in ms. */
  baseMs: number;
  /** No delay is ever longer than this, jitter included. */
  capMs: number;
  /** Each retry waits this many times longer than the one before. */
  factor: number;
  /** ± this fraction of the delay, drawn at random (0 = none). */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, capMs: 30_000, factor: 2, jitter: 0.2 };

/**
 * The delay before reconnect attempt `attempt` (0 for the first retry after a drop).
 * `random` returns a number in [0, 1) — injectable for tests.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const { baseMs, capMs, factor, jitter } = options;
  const n = Math.max(0, Math.floor(Number.isFinite(attempt) ? attempt : 0));
  // factor ** n overflows to Infinity for large n; min() keeps it at the cap.
  const raw = Math.min(capMs, baseMs * factor ** n);
  const spread = 1 - jitter + 2 * jitter * random();
  return Math.max(0, Math.min(capMs, Math.round(raw * spread)));
}
