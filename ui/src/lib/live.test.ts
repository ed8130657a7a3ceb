import { describe, expect, it } from "vitest";
import type { BusEvent } from "./eventSocket";
import {
  applyFeedFilters,
  circleLayout,
  EMPTY_FEED,
  edgeIntensity,
  feedMessageFrom,
  feedReducer,
  hitsForEvent,
  isLit,
  matchesFeed,
  NO_FEED_FILTERS,
  parseFeedFilters,
  recordHits,
  topicMatches,
  type FeedAction,
  type FeedMessage,
  type FeedState,
  type Pending,
} from "./live";

const ev = (event: string, data: Record<string, unknown>, receivedAt = 1000): BusEvent => ({ event, data, timestamp: 0, receivedAt });
const msg = (id: string, extra: Partial<FeedMessage> = {}): FeedMessage => ({
  kind: "message",
  id,
  from: "sb-a",
  to: "sb-b",
  type: "request",
  topic: null,
  at: 0,
  status: "accepted",
  recipients: [],
  correlationId: null,
  traceId: null,
  parentId: null,
  ...extra,
});

describe("layout", () => {
  it("puts sandboxes on a circle in id order, whatever order they come in, and hubs in the middle", () => {
    const a = circleLayout(["sb-c", "sb-a", "sb-b", "sb-d"], 400, 400);
    const b = circleLayout(["sb-d", "sb-b", "sb-a", "sb-c"], 400, 400);
    expect([...a.entries()].sort()).toEqual([...b.entries()].sort());
    expect(a.get("sb-a")).toEqual({ x: 200, y: 60 }); // top
    expect(a.get("sb-b")).toEqual({ x: 340, y: 200 }); // right: clockwise
    const hub = a.get("broadcast")!;
    expect(Math.hypot(hub.x - 200, hub.y - 200)).toBeLessThanOrEqual(40);
  });
});

describe("edges", () => {
  it("a direct message lights sender → recipient", () => {
    const pending: Pending = new Map();
    expect(hitsForEvent(ev("message.accepted", { message_id: "m1", from_sandbox: "a", to_sandbox: "b", message_type: "request" }), pending)).toEqual([
      { from: "a", to: "b", kind: "direct", messageType: "request", topic: null },
    ]);
    expect(hitsForEvent(ev("message.delivered", { message_id: "m1", recipients: ["b"] }), pending)).toEqual([]);
  });

  it("a broadcast, topic or 'any' message lights the hub, then each sandbox it reached", () => {
    const pending: Pending = new Map();
    const t = hitsForEvent(ev("message.accepted", { message_id: "m2", from_sandbox: "a", to_sandbox: "broadcast", message_type: "notification", topic: "team.progress" }), pending);
    expect(t).toEqual([{ from: "a", to: "broadcast", kind: "topic", messageType: "notification", topic: "team.progress" }]);
    const fan = hitsForEvent(ev("message.delivered", { message_id: "m2", recipients: ["b", "c"] }), pending);
    expect(fan.map((h) => `${h.from}->${h.to}:${h.kind}`)).toEqual(["a->b:fanout", "a->c:fanout"]);
    expect(pending.size).toBe(0);
    const any = hitsForEvent(ev("message.accepted", { message_id: "m3", from_sandbox: "a", to_sandbox: "any", message_type: "request" }), pending);
    expect(any[0]?.kind).toBe("any");
    expect(hitsForEvent(ev("message.accepted", { message_id: "m4", from_sandbox: "a", to_sandbox: "broadcast" }), pending)[0]?.kind).toBe("broadcast");
    expect(hitsForEvent(ev("sandbox.connected", { sandbox_id: "a" }), pending)).toEqual([]);
  });

  it("an edge is lit when a message passes and fades out over the fade time", () => {
    const edges = recordHits(new Map(), [{ from: "a", to: "b", kind: "direct", messageType: null, topic: null }], 1000);
    const again = recordHits(edges, [{ from: "a", to: "b", kind: "direct", messageType: null, topic: null }], 3000);
    const e = again.get("a->b")!;
    expect(e.count).toBe(2);
    expect(e.lastAt).toBe(3000);
    expect(edgeIntensity(3000, 3000, 4000)).toBe(1);
    expect(edgeIntensity(3000, 5000, 4000)).toBe(0.5);
    expect(isLit(e, 6999, 4000)).toBe(true);
    expect(isLit(e, 7000, 4000)).toBe(false);
  });

  it("keeps at most max edges, dropping the least recent", () => {
    let edges = recordHits(new Map(), [{ from: "a", to: "b", kind: "direct", messageType: null, topic: null }], 1);
    edges = recordHits(edges, [{ from: "a", to: "c", kind: "direct", messageType: null, topic: null }], 2, 2);
    edges = recordHits(edges, [{ from: "a", to: "b", kind: "direct", messageType: null, topic: null }], 3, 2);
    edges = recordHits(edges, [{ from: "a", to: "d", kind: "direct", messageType: null, topic: null }], 4, 2);
    expect([...edges.keys()]).toEqual(["a->b", "a->d"]);
  });
});

describe("feed filters", () => {
  it("round-trip through the URL, ignoring invalid values", () => {
    const f = parseFeedFilters("sandbox=sb-a&type=REQUEST&topic=team.%23&correlation=job 42&x=1");
    expect(f).toEqual({ sandbox: "sb-a", type: "request", topic: "team.#", correlation: "job 42", invalid: [] });
    expect(applyFeedFilters(f, "x=1").toString()).toBe("x=1&sandbox=sb-a&type=request&topic=team.%23&correlation=job+42");
    expect(parseFeedFilters("type=letter&topic=a..b&sandbox=no way").invalid).toEqual(["sandbox", "type", "topic"]);
  });

  it("match topics like the bus does", () => {
    expect(topicMatches("a.*", "a.b")).toBe(true);
    expect(topicMatches("a.*", "a")).toBe(false);
    expect(topicMatches("a.*", "a.b.c")).toBe(false);
    expect(topicMatches("a.#", "a")).toBe(true);
    expect(topicMatches("a.#", "a.b.c")).toBe(true);
    expect(topicMatches("#", "x.y")).toBe(true);
    expect(topicMatches("a.#.c", "a.x.y.c")).toBe(true);
    expect(topicMatches("a.#.c", "a.c")).toBe(true);
  });

  it("filter by sandbox (sender, recipient or reached), type, topic and correlation id", () => {
    const m = msg("m1", { to: "broadcast", recipients: ["sb-c"], topic: "team.progress", type: "notification", correlationId: "job-1" });
    expect(matchesFeed(m, { ...NO_FEED_FILTERS, sandbox: "sb-c" })).toBe(true);
    expect(matchesFeed(m, { ...NO_FEED_FILTERS, sandbox: "sb-x" })).toBe(false);
    expect(matchesFeed(m, { ...NO_FEED_FILTERS, type: "request" })).toBe(false);
    expect(matchesFeed(m, { ...NO_FEED_FILTERS, topic: "team.*" })).toBe(true);
    expect(matchesFeed(msg("m2"), { ...NO_FEED_FILTERS, topic: "#" })).toBe(false);
    expect(matchesFeed(m, { ...NO_FEED_FILTERS, correlation: "job-1" })).toBe(true);
    expect(matchesFeed(msg("m3"), { ...NO_FEED_FILTERS, correlation: "job-1" })).toBe(false); // it has none
    expect(matchesFeed(msg("m4", { correlationId: "job-2" }), { ...NO_FEED_FILTERS, correlation: "job-1" })).toBe(false);
    expect(matchesFeed({ kind: "gap", id: "g", at: 0, since: null }, { ...NO_FEED_FILTERS, sandbox: "zz" })).toBe(true);
  });
});

describe("feed entries", () => {
  it("take the ids a message.accepted event carries: correlation, trace and parent", () => {
    const item = feedMessageFrom(
      ev("message.accepted", {
        message_id: "m2",
        from_sandbox: "sb-b",
        to_sandbox: "sb-a",
        message_type: "response",
        correlation_id: "m1",
        trace_id: "m1",
        parent_id: "m1",
      }, 1234),
    );
    expect(item).toEqual(msg("m2", { from: "sb-b", to: "sb-a", type: "response", at: 1234, correlationId: "m1", traceId: "m1", parentId: "m1" }));
  });

  it("a trace's first message has no parent; a message without a correlation id has null; an event without ids makes no entry", () => {
    const root = feedMessageFrom(
      ev("message.accepted", { message_id: "m1", from_sandbox: "sb-a", to_sandbox: "team", message_type: "notification", topic: "team.news", correlation_id: null, trace_id: "m1", parent_id: null }),
    );
    expect(root).toMatchObject({ id: "m1", topic: "team.news", correlationId: null, traceId: "m1", parentId: null });
    expect(feedMessageFrom(ev("message.accepted", { message_id: "m3", from_sandbox: "sb-a", to_sandbox: "sb-b" }))).toMatchObject({
      correlationId: null,
      traceId: null,
      parentId: null,
    });
    expect(feedMessageFrom(ev("message.accepted", { from_sandbox: "sb-a", to_sandbox: "sb-b" }))).toBeNull();
  });
});

function feed(actions: FeedAction[], start: FeedState = EMPTY_FEED): FeedState {
  return actions.reduce(feedReducer, start);
}

describe("feed pauses while scrolled", () => {
  it("inserts new entries at the top while the newest is in view", () => {
    const s = feed([{ type: "add", item: msg("1") }, { type: "add", item: msg("2") }]);
    expect(s.items.map((i) => i.id)).toEqual(["2", "1"]);
    expect(s.paused).toBe(false);
  });

  it("counts, not inserts, while scrolled away; resume brings them in", () => {
    const s = feed([
      { type: "add", item: msg("1") },
      { type: "scroll", atNewest: false },
      { type: "add", item: msg("2") },
      { type: "add", item: msg("3") },
    ]);
    expect(s.paused).toBe(true);
    expect(s.items.map((i) => i.id)).toEqual(["1"]);
    expect(s.pending.map((i) => i.id)).toEqual(["3", "2"]);
    const r = feedReducer(s, { type: "resume" });
    expect(r).toEqual({ items: [msg("3"), msg("2"), msg("1")], pending: [], paused: false });
  });

  it("scrolling back to the newest resumes; scrolling further away stays paused", () => {
    const s = feed([{ type: "scroll", atNewest: false }, { type: "add", item: msg("1") }, { type: "scroll", atNewest: false }]);
    expect(s.paused).toBe(true);
    expect(feedReducer(s, { type: "scroll", atNewest: true })).toEqual({ items: [msg("1")], pending: [], paused: false });
  });

  it("an explicit pause holds new entries too; repeated events are dropped; updates reach pending entries", () => {
    const s = feed([
      { type: "add", item: msg("1") },
      { type: "pause" },
      { type: "add", item: msg("1") },
      { type: "add", item: msg("2") },
      { type: "add", item: msg("2") },
      { type: "update", id: "2", patch: { status: "delivered", recipients: ["sb-b"] } },
      { type: "update", id: "1", patch: { status: "dead" } },
    ]);
    expect(s.pending).toEqual([msg("2", { status: "delivered", recipients: ["sb-b"] })]);
    expect(s.items).toEqual([msg("1", { status: "dead" })]);
  });

  it("keeps at most MAX_FEED entries", () => {
    let s = EMPTY_FEED;
    for (let i = 0; i < 520; i++) s = feedReducer(s, { type: "add", item: msg(String(i)) });
    expect(s.items).toHaveLength(500);
    expect(s.items[0]?.id).toBe("519");
  });
});
