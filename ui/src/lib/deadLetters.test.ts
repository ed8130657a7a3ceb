import { describe, expect, it } from "vitest";
import {
  applyDeadLetterFilters,
  bulkReducer,
  hasFilter,
  NO_DEAD_LETTER_FILTERS,
  parseDeadLetterFilters,
  purgeQuery,
  replayBody,
  type BulkState,
} from "./deadLetters";

describe("dead-letter filters in the URL", () => {
  it("reads valid filters and names the invalid ones", () => {
    const f = parseDeadLetterFilters("reason=nacked&sandbox_id=sb-bob&message_id=bad id&since=2026-12-05T20:00&until=nope&after=40");
    expect(f.reason).toBe("nacked");
    expect(f.sandbox_id).toBe("sb-bob");
    expect(f.message_id).toBeNull();
    expect(f.since).toBe("2026-12-05T20:00:00.000Z");
    expect(f.until).toBeNull();
    expect(f.after).toBe(40);
    expect(f.invalid).toEqual(["message_id", "until"]);
    expect(parseDeadLetterFilters("reason=lost").invalid).toEqual(["reason"]);
  });

  it("writes them back without empty ones, keeping other parameters, and round-trips", () => {
    const filters = { ...NO_DEAD_LETTER_FILTERS, reason: "expired" as const, since: "2026-12-05T20:00:00.000Z" };
    const params = applyDeadLetterFilters(filters, "inspect=3&after=9&sandbox_id=x", 20);
    expect(params.toString()).toBe("inspect=3&reason=expired&since=2026-12-05T20%3A00%3A00.000Z&after=20");
    const back = parseDeadLetterFilters(params);
    expect(back.reason).toBe("expired");
    expect(back.since).toBe(filters.since);
    expect(applyDeadLetterFilters(NO_DEAD_LETTER_FILTERS, "after=9").toString()).toBe("");
  });
});

describe("bulk bodies", () => {
  it("replays by the filter with a capped limit", () => {
    expect(replayBody({ ...NO_DEAD_LETTER_FILTERS, sandbox_id: "sb-a" }, 50_000)).toEqual({ sandbox_id: "sb-a", limit: 10_000 });
    expect(replayBody(NO_DEAD_LETTER_FILTERS, 0)).toEqual({ limit: 1 });
  });

  it("purges by the filter, or all=true only without one", () => {
    expect(purgeQuery({ ...NO_DEAD_LETTER_FILTERS, reason: "nacked" })).toEqual({ reason: "nacked" });
    expect(purgeQuery(NO_DEAD_LETTER_FILTERS)).toEqual({ all: true });
    expect(hasFilter(NO_DEAD_LETTER_FILTERS)).toBe(false);
  });
});

function run(kind: "replay" | "purge", actions: Parameters<ReturnType<typeof bulkReducer>>[1][]): BulkState[] {
  const reduce = bulkReducer(kind);
  const states: BulkState[] = [];
  let s: BulkState = { step: "idle" };
  for (const a of actions) {
    s = reduce(s, a);
    states.push(s);
  }
  return states;
}

describe("bulk flows", () => {
  it("replay: dry-run count, one confirmation, then the result", () => {
    const states = run("replay", [
      { type: "start" },
      { type: "counted", total: 7, filtered: true },
      { type: "confirm" },
      { type: "finished", done: 7 },
    ]);
    expect(states.map((s) => s.step)).toEqual(["counting", "confirm", "running", "done"]);
    expect(states[1]).toEqual({ step: "confirm", total: 7, needsAll: false });
  });

  it("replay without a filter needs no second confirmation", () => {
    const states = run("replay", [{ type: "start" }, { type: "counted", total: 3, filtered: false }, { type: "confirm" }]);
    expect(states.at(-1)?.step).toBe("running");
  });

  it("purge with a filter: one confirmation", () => {
    const states = run("purge", [{ type: "start" }, { type: "counted", total: 2, filtered: true }, { type: "confirm" }]);
    expect(states.map((s) => s.step)).toEqual(["counting", "confirm", "running"]);
  });

  it("purge without a filter: a second, explicit confirmation before anything runs", () => {
    const states = run("purge", [
      { type: "start" },
      { type: "counted", total: 12, filtered: false },
      { type: "confirm" },
      { type: "confirm" },
      { type: "finished", done: 12 },
    ]);
    expect(states.map((s) => s.step)).toEqual(["counting", "confirm", "confirm-all", "running", "done"]);
  });

  it("nothing to do when nothing matches; a late count after cancelling is ignored; errors end the flow", () => {
    expect(run("purge", [{ type: "start" }, { type: "counted", total: 0, filtered: true }, { type: "confirm" }]).at(-1)).toEqual({
      step: "confirm",
      total: 0,
      needsAll: false,
    });
    expect(run("replay", [{ type: "start" }, { type: "reset" }, { type: "counted", total: 4, filtered: true }]).at(-1)).toEqual({
      step: "idle",
    });
    expect(run("replay", [{ type: "start" }, { type: "failed", error: "403" }]).at(-1)).toEqual({ step: "error", error: "403" });
  });
});
