import { describe, expect, it } from "vitest";
import { formatAgo, formatRate } from "./format";

describe("formatAgo", () => {
  const now = Date.parse("2026-12-05T12:00:00Z");
  it("says how long ago", () => {
    expect(formatAgo(null, now)).toBe("never");
    expect(formatAgo("2026-12-05T11:59:58Z", now)).toBe("just now");
    expect(formatAgo("2026-12-05T11:59:18Z", now)).toBe("42 s ago");
    expect(formatAgo("2026-12-05T11:57:00+00:00", now)).toBe("3 min ago");
    expect(formatAgo("2026-12-05T07:00:00Z", now)).toBe("5 h ago");
    expect(formatAgo("2026-12-01T12:00:00Z", now)).toBe("4 d ago");
    expect(formatAgo("2026-12-05T12:10:00Z", now)).toBe("in the future");
    expect(formatAgo("garbage", now)).toBe("garbage");
    expect(formatAgo("2026-12-05T11:59:18.123456", now)).toBe("42 s ago"); // no zone: UTC
  });
});

describe("formatRate", () => {
  it("rounds by size", () => {
    expect([0, 0.0166, 1.54, 120.4].map(formatRate)).toEqual(["0", "0.02", "1.5", "120"]);
  });
});
