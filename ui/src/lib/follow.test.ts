import { describe, expect, it } from "vitest";
import { followStep, isAtBottom } from "./follow";

describe("follow rule", () => {
  it("pauses when the reader scrolls away and resumes when they come back", () => {
    expect(followStep(false, { type: "scroll", atNewest: false })).toBe("pause");
    expect(followStep(true, { type: "scroll", atNewest: false })).toBeNull();
    expect(followStep(true, { type: "scroll", atNewest: true })).toBe("resume");
    expect(followStep(false, { type: "scroll", atNewest: true })).toBeNull();
  });

  it("pauses and resumes on request", () => {
    expect(followStep(false, { type: "pause" })).toBe("pause");
    expect(followStep(true, { type: "pause" })).toBeNull();
    expect(followStep(true, { type: "resume" })).toBe("resume");
  });

  it("knows when a box is scrolled to its end", () => {
    expect(isAtBottom({ scrollTop: 600, scrollHeight: 1000, clientHeight: 400 })).toBe(true);
    expect(isAtBottom({ scrollTop: 595, scrollHeight: 1000, clientHeight: 400 })).toBe(true);
    expect(isAtBottom({ scrollTop: 500, scrollHeight: 1000, clientHeight: 400 })).toBe(false);
    expect(isAtBottom({ scrollTop: 0, scrollHeight: 300, clientHeight: 400 })).toBe(true);
  });
});
