import { describe, expect, it } from "vitest";
import { countByReason, countByStatus } from "./overview";

describe("countByStatus", () => {
  it("counts each status", () => {
    const list = ["online", "offline", "online", "unregistered"].map((status) => ({ status }));
    expect(countByStatus(list)).toEqual({ online: 2, offline: 1, unregistered: 1, total: 4 });
    expect(countByStatus([])).toEqual({ online: 0, offline: 0, unregistered: 0, total: 0 });
  });
});

describe("countByReason", () => {
  it("counts and sorts, most first", () => {
    const list = ["expired", "nacked", "expired", "max_attempts", "nacked", "expired"].map((reason) => ({ reason }));
    expect(countByReason(list)).toEqual([
      { reason: "expired", count: 3 },
      { reason: "nacked", count: 2 },
      { reason: "max_attempts", count: 1 },
    ]);
  });
});
