import { describe, expect, it } from "vitest";
import { isIdentifier } from "./filters";
import { applyTraceFilters, flatten, layoutTimeline, parseTraceFilters, type TraceNode } from "./trace";

const T0 = "2026-12-05T20:00:00.000+00:00";
const at = (ms: number) => new Date(Date.parse(T0) + ms).toISOString();

function node(id: string, acceptedMs: number, extra: Partial<TraceNode> = {}, children: TraceNode[] = []): TraceNode {
  return {
    message: {
      message_id: id,
      from_sandbox: "sb-a",
      to_sandbox: "sb-b",
      from_agent: "x",
      to_agent: "any",
      message_type: "request",
      content: {},
      timestamp: 0,
      priority: 5,
      requires_response: false,
      correlation_id: null,
      ttl: null,
      metadata: {},
      topic: null,
    },
    status: "delivered",
    hops: 0,
    parent_id: null,
    accepted_at: at(acceptedMs),
    routed_at: at(acceptedMs + 10),
    deliveries: [],
    dead_letters: [],
    children: children as unknown as TraceNode["children"],
    ...extra,
  };
}

describe("trace tree → timeline", () => {
  const tree = [
    node(
      "req",
      0,
      { deliveries: [{ sandbox_id: "sb-b", seq: 1, state: "acked", attempts: 1, delivered_at: at(10), acked_at: at(510) }] },
      [
        node("late", 800, { status: "dead", routed_at: null, dead_letters: [{ sandbox_id: "sb-c", reason: "expired", last_error: "ttl", created_at: at(1000) }] }),
        node("resp", 600, { deliveries: [{ sandbox_id: "sb-a", seq: 4, state: "delivered", attempts: 0, delivered_at: at(620), acked_at: null }] }),
      ],
    ),
  ];

  it("orders messages depth first, children by time", () => {
    expect(flatten(tree).map(({ node: n, depth }) => `${depth}:${n.message.message_id}`)).toEqual(["0:req", "1:resp", "1:late"]);
  });

  it("places every hop on one axis and measures the durations", () => {
    const tl = layoutTimeline(tree);
    expect(tl.durationMs).toBe(1000);
    const [req, resp, late] = tl.rows;
    expect(req).toMatchObject({ id: "req", depth: 0, acceptedAt: 0, routedAt: 0.01, routeMs: 10, failed: false });
    expect(req!.hops).toEqual([
      { recipient: "sb-b", seq: 1, state: "acked", attempts: 1, deliveredAt: 0.01, ackedAt: 0.51, deliverMs: 10, ackMs: 500, failed: false },
    ]);
    expect(resp!.hops[0]).toMatchObject({ ackedAt: null, ackMs: null, deliverMs: 20 });
    expect(late).toMatchObject({ id: "late", status: "dead", routedAt: null, failed: true });
    expect(late!.failures).toEqual([{ recipient: "sb-c", reason: "expired", error: "ttl", at: 1 }]);
  });

  it("copes with a single instant and with nothing", () => {
    const one = layoutTimeline([node("solo", 0, { routed_at: null })]);
    expect(one.rows[0]).toMatchObject({ acceptedAt: 0, routedAt: null });
    expect(layoutTimeline([]).rows).toEqual([]);
  });
});

describe("traces list filters", () => {
  it("round-trip through the URL", () => {
    const f = parseTraceFilters("sandbox=sb-a&since=2026-12-05T20:00", isIdentifier);
    expect(f).toEqual({ sandbox: "sb-a", since: "2026-12-05T20:00:00.000Z", invalid: [] });
    expect(applyTraceFilters(f).toString()).toBe("sandbox=sb-a&since=2026-12-05T20%3A00%3A00.000Z");
    expect(parseTraceFilters("sandbox=a b&since=soon", isIdentifier).invalid).toEqual(["sandbox", "since"]);
  });
});
