import { describe, expect, it } from "vitest";
import { BUCKET_MS, bucketize, EventWindow, summarize, WINDOW_MS } from "./rate";

const T0 = 1_800_000_000_000; // a multiple of 5 000 ms

describe("bucketize", () => {
  it("makes 60 buckets of 5 s for the last 5 minutes, the current one last", () => {
    const b = bucketize([], T0 + 1234);
    expect(b.counts).toHaveLength(60);
    expect(b.size).toBe(BUCKET_MS);
    expect(b.start + 60 * BUCKET_MS).toBe(T0 + BUCKET_MS); // the last bucket is [T0, T0+5s), holding now
    expect(b.counts.every((c) => c === 0)).toBe(true);
  });

  it("aligns bucket edges so a bucket does not move as time passes", () => {
    expect(bucketize([], T0).start).toBe(bucketize([], T0 + 4999).start);
    expect(bucketize([], T0 + 5000).start).toBe(bucketize([], T0).start + 5000);
  });

  it("counts each event into its bucket; edges belong to the later bucket", () => {
    const now = T0 + 2000;
    const times = [T0, T0 + 1999, T0 - 1, T0 - 5000, T0 - 5001, T0 - 10_000];
    const { counts } = bucketize(times, now);
    expect(counts[59]).toBe(2); // T0, T0+1999
    expect(counts[58]).toBe(2); // T0-1, T0-5000
    expect(counts[57]).toBe(2); // T0-5001, T0-10000
    expect(summarize(counts)).toEqual({ total: 6, peak: 2 });
  });

  it("ignores events outside the window (too old, or from the future)", () => {
    const now = T0 + 2000;
    const { start, counts } = bucketize([start0(now) - 1, T0 + 5000, T0 + 60_000], now);
    expect(summarize(counts).total).toBe(0);
    expect(bucketize([start], now).counts[0]).toBe(1);
  });

  it("marks buckets that ended before watching started as unknown (null)", () => {
    const now = T0 + 2000;
    const since = T0 - 12_000; // inside bucket 56 ([T0-15s, T0-10s)); bucket 59 is [T0, T0+5s)
    const { counts } = bucketize([T0 - 11_000], now, since);
    expect(counts.slice(0, 56).every((c) => c === null)).toBe(true);
    expect(counts[56]).toBe(1);
    expect(counts[57]).toBe(0);
    expect(summarize(counts)).toEqual({ total: 1, peak: 1 });
  });

  it("handles another window and bucket size", () => {
    const { counts } = bucketize([T0, T0 + 500], T0 + 900, null, 10_000, 1000);
    expect(counts).toHaveLength(10);
    expect(counts[9]).toBe(2);
  });
});

function start0(now: number): number {
  return bucketize([], now).start;
}

describe("EventWindow", () => {
  it("keeps only the events of the window", () => {
    const w = new EventWindow(WINDOW_MS);
    w.record(T0 - WINDOW_MS - 1);
    w.record(T0 - WINDOW_MS);
    w.record(T0 - 10);
    expect(w.snapshot(T0)).toEqual([T0 - WINDOW_MS, T0 - 10]);
    expect(w.snapshot(T0 + WINDOW_MS - 10)).toEqual([T0 - 10]);
    expect(w.snapshot(T0 + 2 * WINDOW_MS)).toEqual([]);
  });
});

describe("EventWindow with ids", () => {
  it("counts a repeated event once while it is in the window", () => {
    const w = new EventWindow(WINDOW_MS);
    expect(w.record(T0, "m1")).toBe(true);
    expect(w.record(T0 + 10, "m1")).toBe(false);
    expect(w.record(T0 + 20, "m2")).toBe(true);
    expect(w.record(T0 + 30)).toBe(true); // no id: always counted
    expect(w.snapshot(T0 + 100)).toEqual([T0, T0 + 20, T0 + 30]);
    // once m1 has left the window it is forgotten
    w.snapshot(T0 + WINDOW_MS + 1);
    expect(w.record(T0 + WINDOW_MS + 2, "m1")).toBe(true);
  });

  it("keeps times ordered when the clock goes back", () => {
    const w = new EventWindow(WINDOW_MS);
    w.record(T0);
    w.record(T0 - 5000);
    expect(w.snapshot(T0)).toEqual([T0, T0]);
  });
});
