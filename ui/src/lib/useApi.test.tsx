// @vitest-environment jsdom
import { act, cleanup, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useDebounced } from "./useApi";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

describe("useDebounced", () => {
  it("runs once after a burst", () => {
    const fn = vi.fn();
    const { result } = renderHook(() => useDebounced(fn, 500));
    act(() => {
      result.current();
      vi.advanceTimersByTime(200);
      result.current();
      vi.advanceTimersByTime(200);
      result.current();
    });
    expect(fn).not.toHaveBeenCalled();
    act(() => void vi.advanceTimersByTime(500));
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it("still runs during a steady stream of calls, at most maxWait after the first", () => {
    const fn = vi.fn();
    const { result } = renderHook(() => useDebounced(fn, 500, 2000));
    act(() => {
      for (let i = 0; i < 50; i++) {
        result.current();
        vi.advanceTimersByTime(100);
      }
    });
    // 5 s of calls every 100 ms: a plain debounce would never have fired
    expect(fn.mock.calls.length).toBeGreaterThanOrEqual(2);
    expect(fn.mock.calls.length).toBeLessThanOrEqual(3);
  });
});
