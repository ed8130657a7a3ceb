import { useEffect, useMemo, useReducer, useRef, useState } from "react";
import type { EventsHub } from "@/lib/events";
import { EMPTY_FEED, feedMessageFrom, feedReducer, hitsForEvent, isLit, recordHits, type Edge, type Pending } from "@/lib/live";

/**
 * The graph's edges and the feed, from the events socket: `message.accepted` lights edges and adds to the feed,
 * `message.delivered` and `message.dead_lettered` update its entries, a welcome with `missed` adds a gap marker.
 */
export function useLiveStream(hub: EventsHub | null) {
  const [edges, setEdges] = useState<Map<string, Edge>>(() => new Map());
  const pending = useRef<Pending>(new Map());
  const [feed, dispatch] = useReducer(feedReducer, EMPTY_FEED);
  const lastEventAt = useRef<number | null>(null);

  useEffect(() => {
    if (!hub) return;
    return hub.subscribe((message) => {
      if (message.kind === "welcome") {
        if (message.missed) {
          dispatch({ type: "add", item: { kind: "gap", id: `gap-${Date.now()}`, at: Date.now(), since: lastEventAt.current } });
        }
        return;
      }
      const event = message.event;
      lastEventAt.current = event.receivedAt;
      const hits = hitsForEvent(event, pending.current);
      if (hits.length > 0) setEdges((prev) => recordHits(prev, hits, Date.now()));
      const d = event.data;
      const id = typeof d.message_id === "string" ? d.message_id : null;
      if (event.event === "message.accepted") {
        const item = feedMessageFrom(event);
        if (item) dispatch({ type: "add", item });
      } else if (event.event === "message.delivered" && id) {
        const recipients = Array.isArray(d.recipients) ? d.recipients.filter((r): r is string => typeof r === "string") : [];
        dispatch({ type: "update", id, patch: { status: "delivered", recipients } });
      } else if (event.event === "message.dead_lettered" && id) {
        dispatch({ type: "update", id, patch: { status: "dead" } });
      }
    });
  }, [hub]);

  return { edges, feed, dispatch };
}

/** The time the graph is drawn at: ticks every 200 ms while an edge is fading, and when the edges change. */
export function useFadeClock(edges: Map<string, Edge>): number {
  const [now, setNow] = useState(() => Date.now());
  const anyLit = useMemo(() => [...edges.values()].some((e) => isLit(e, now)), [edges, now]);
  useEffect(() => {
    if (!anyLit) return;
    const t = setInterval(() => setNow(Date.now()), 200);
    return () => clearInterval(t);
  }, [anyLit]);
  useEffect(() => setNow(Date.now()), [edges]);
  return now;
}
