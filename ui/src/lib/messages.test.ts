import { describe, expect, it } from "vitest";
import { between, formatDuration, traceOf } from "./messages";

describe("message helpers", () => {
  it("reads metadata.trace", () => {
    expect(traceOf({ trace: { trace_id: "t1", parent_id: "p", hops: 2 } })).toEqual({ traceId: "t1", parentId: "p", hops: 2 });
    expect(traceOf({ trace: { trace_id: "t1", parent_id: null, hops: 0 } })?.parentId).toBeNull();
    expect(traceOf({})).toBeNull();
    expect(traceOf({ trace: "x" })).toBeNull();
  });

  it("measures and formats durations", () => {
    expect(between("2026-12-05T20:00:00+00:00", "2026-12-05T20:00:01.5+00:00")).toBe(1500);
    expect(between("2026-12-05T20:00:00", null)).toBeNull();
    expect(formatDuration(1500)).toBe("1.5 s");
    expect(formatDuration(0.42)).toBe("0.4 ms");
    expect(formatDuration(125_000)).toBe("2 min 5 s");
    expect(formatDuration(null)).toBe("—");
  });
});
