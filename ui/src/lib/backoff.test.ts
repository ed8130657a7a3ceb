import { describe, expect, it } from "vitest";
import { backoffDelay, DEFAULT_BACKOFF } from "./backoff";

const noJitter = { ...DEFAULT_BACKOFF, jitter: 0 };

describe("backoffDelay", () => {
  it("starts at the base delay and doubles", () => {
    expect([0, 1, 2, 3, 4].map((n) => backoffDelay(n, noJitter))).toEqual([500, 1000, 2000, 4000, 8000]);
  });

  it("never exceeds the cap, however many attempts", () => {
    expect(backoffDelay(6, noJitter)).toBe(30_000);
    expect(backoffDelay(50, noJitter)).toBe(30_000);
    expect(backoffDelay(5000, noJitter)).toBe(30_000); // 2 ** 5000 is Infinity
    // jitter upwards does not push it past the cap either
    expect(backoffDelay(50, DEFAULT_BACKOFF, () => 0.999999)).toBe(30_000);
  });

  it("spreads the delay by ± jitter", () => {
    expect(backoffDelay(2, DEFAULT_BACKOFF, () => 0)).toBe(1600); // 2000 × 0.8
    expect(backoffDelay(2, DEFAULT_BACKOFF, () => 0.5)).toBe(2000);
    expect(backoffDelay(2, DEFAULT_BACKOFF, () => 0.999999)).toBe(2400); // ≈ 2000 × 1.2
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(3, DEFAULT_BACKOFF);
      expect(d).toBeGreaterThanOrEqual(3200);
      expect(d).toBeLessThanOrEqual(4800);
    }
  });

  it("treats odd attempts as the first", () => {
    expect(backoffDelay(-3, noJitter)).toBe(500);
    expect(backoffDelay(Number.NaN, noJitter)).toBe(500);
    expect(backoffDelay(1.7, noJitter)).toBe(1000);
  });

  it("honours other options", () => {
    expect(backoffDelay(3, { baseMs: 100, capMs: 1000, factor: 3, jitter: 0 })).toBe(1000);
    expect(backoffDelay(2, { baseMs: 100, capMs: 1000, factor: 3, jitter: 0 })).toBe(900);
  });
});
