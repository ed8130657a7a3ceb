/**
 * The Live view's logic: where the sandboxes sit on the graph, which edges light up for which events and how
 * they fade, the message feed's filters (in the URL) and its pause-while-scrolled state.
 */
import type { BusEvent } from "./eventSocket";
import { isIdentifier } from "./filters";
import { followStep, type FollowAction } from "./follow";

// ---------- graph ----------

/** Pseudo-nodes for messages without one recipient sandbox. */
export const HUB_BROADCAST = "broadcast";
export const HUB_ANY = "any";
export const HUBS = [HUB_BROADCAST, HUB_ANY] as const;

export interface Point {
  x: number;
  y: number;
}

/**
 * Sandboxes on a circle, in id order (so the same set of sandboxes always looks the same), starting at the top
 * and going clockwise; the hubs near the centre.
 */
export function circleLayout(ids: readonly string[], width: number, height: number, hubs: readonly string[] = HUBS): Map<string, Point> {
  const out = new Map<string, Point>();
  const cx = width / 2;
  const cy = height / 2;
  const r = Math.max(10, Math.min(width, height) / 2 - 60);
  const sorted = [...new Set(ids)].filter((id) => !hubs.includes(id)).sort((a, b) => a.localeCompare(b));
  sorted.forEach((id, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / sorted.length;
    out.set(id, { x: round(cx + r * Math.cos(angle)), y: round(cy + r * Math.sin(angle)) });
  });
  const inner = hubs.length > 1 ? Math.min(40, r / 3) : 0;
  hubs.forEach((id, i) => {
    const angle = Math.PI + (2 * Math.PI * i) / hubs.length;
    out.set(id, { x: round(cx + inner * Math.cos(angle)), y: round(cy + inner * Math.sin(angle)) });
  });
  return out;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

export type EdgeKind = "direct" | "broadcast" | "topic" | "any" | "fanout";

export interface EdgeHit {
  from: string;
  to: string;
  kind: EdgeKind;
  messageType: string | null;
  topic: string | null;
}

export interface Edge extends EdgeHit {
  count: number;
  /** ms since the epoch (this page's clock) of the last message on the edge. */
  lastAt: number;
}

/** How long an edge stays lit after a message, fading linearly. */
export const FADE_MS = 4000;

export function edgeKey(from: string, to: string): string {
  return `${from}->${to}`;
}

/** 1 just after a message, down to 0 once `fadeMs` have passed. */
export function edgeIntensity(lastAt: number, now: number, fadeMs: number = FADE_MS): number {
  const age = now - lastAt;
  if (age < 0) return 1;
  if (age >= fadeMs) return 0;
  return 1 - age / fadeMs;
}

export function isLit(edge: Pick<Edge, "lastAt">, now: number, fadeMs: number = FADE_MS): boolean {
  return edgeIntensity(edge.lastAt, now, fadeMs) > 0;
}

/** Messages sent to a hub, waiting for their `message.delivered` to say which sandboxes they reached. */
export type Pending = Map<string, { from: string; kind: EdgeKind; messageType: string | null; topic: string | null }>;

const MAX_PENDING = 1000;

function str(value: unknown): string | null {
  return typeof value === "string" && value !== "" ? value : null;
}

/**
 * The edges an event lights. `message.accepted`: sender → recipient for a direct message; sender → the
 * broadcast hub (broadcasts and topic messages) or the "any" hub (capability routing), remembered in `pending`.
 * `message.delivered` of such a message: sender → each sandbox it reached. `pending` is updated in place.
 */
export function hitsForEvent(event: BusEvent, pending: Pending): EdgeHit[] {
  const d = event.data;
  if (event.event === "message.accepted") {
    const from = str(d.from_sandbox);
    const to = str(d.to_sandbox);
    const id = str(d.message_id);
    if (!from || !to) return [];
    const messageType = str(d.message_type);
    const topic = str(d.topic);
    if (to === HUB_BROADCAST || to === HUB_ANY) {
      const kind: EdgeKind = to === HUB_ANY ? "any" : topic ? "topic" : "broadcast";
      if (id) {
        pending.set(id, { from, kind, messageType, topic });
        while (pending.size > MAX_PENDING) pending.delete(pending.keys().next().value as string);
      }
      return [{ from, to, kind, messageType, topic }];
    }
    return [{ from, to, kind: "direct", messageType, topic }];
  }
  if (event.event === "message.delivered") {
    const id = str(d.message_id);
    const sent = id ? pending.get(id) : undefined;
    if (!id || !sent) return [];
    pending.delete(id);
    const recipients = Array.isArray(d.recipients) ? d.recipients.filter((r): r is string => typeof r === "string") : [];
    return recipients.map((to) => ({ from: sent.from, to, kind: "fanout" as const, messageType: sent.messageType, topic: sent.topic }));
  }
  return [];
}

/** A new edge map with `hits` counted at time `at`; at most `max` edges are kept (the least recent go). */
export function recordHits(edges: ReadonlyMap<string, Edge>, hits: readonly EdgeHit[], at: number, max = 300): Map<string, Edge> {
  const next = new Map(edges);
  for (const hit of hits) {
    const key = edgeKey(hit.from, hit.to);
    const old = next.get(key);
    next.delete(key);
    next.set(key, { ...hit, count: (old?.count ?? 0) + 1, lastAt: at });
  }
  while (next.size > max) next.delete(next.keys().next().value as string);
  return next;
}

// ---------- feed filters ----------

export const MESSAGE_TYPES = ["request", "response", "notification", "command"] as const;

export interface FeedFilters {
  sandbox: string | null;
  type: (typeof MESSAGE_TYPES)[number] | null;
  /** A topic or a pattern (`*` one word, `#` zero or more). */
  topic: string | null;
  correlation: string | null;
}

export const NO_FEED_FILTERS: FeedFilters = { sandbox: null, type: null, topic: null, correlation: null };

const TOPIC_PATTERN = /^(?:[A-Za-z0-9_-]+|\*|#)(?:\.(?:[A-Za-z0-9_-]+|\*|#))*$/;

export function parseFeedFilters(search: URLSearchParams | string): FeedFilters & { invalid: string[] } {
  const params = typeof search === "string" ? new URLSearchParams(search) : search;
  const invalid: string[] = [];
  const out: FeedFilters = { ...NO_FEED_FILTERS };
  const sandbox = params.get("sandbox")?.trim();
  if (sandbox) {
    if (isIdentifier(sandbox)) out.sandbox = sandbox;
    else invalid.push("sandbox");
  }
  const type = params.get("type")?.trim().toLowerCase();
  if (type) {
    if ((MESSAGE_TYPES as readonly string[]).includes(type)) out.type = type as FeedFilters["type"];
    else invalid.push("type");
  }
  const topic = params.get("topic")?.trim();
  if (topic) {
    if (topic.length <= 255 && TOPIC_PATTERN.test(topic)) out.topic = topic;
    else invalid.push("topic");
  }
  const correlation = params.get("correlation")?.trim();
  if (correlation) {
    if (correlation.length <= 128) out.correlation = correlation;
    else invalid.push("correlation");
  }
  return { ...out, invalid };
}

export function applyFeedFilters(filters: FeedFilters, base?: URLSearchParams | string): URLSearchParams {
  const params = new URLSearchParams(base ?? "");
  for (const key of ["sandbox", "type", "topic", "correlation"] as const) {
    params.delete(key);
    const v = filters[key];
    if (v) params.set(key, v);
  }
  return params;
}

/** AMQP-style topic matching: `*` is one word, `#` zero or more. */
export function topicMatches(pattern: string, topic: string): boolean {
  const p = pattern.split(".");
  const t = topic.split(".");
  const memo = new Map<string, boolean>();
  const go = (i: number, j: number): boolean => {
    const key = `${i},${j}`;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let result: boolean;
    if (i === p.length) result = j === t.length;
    else if (p[i] === "#") result = go(i + 1, j) || (j < t.length && go(i, j + 1));
    else result = j < t.length && (p[i] === "*" || p[i] === t[j]) && go(i + 1, j + 1);
    memo.set(key, result);
    return result;
  };
  return go(0, 0);
}

// ---------- feed ----------

export interface FeedMessage {
  kind: "message";
  id: string;
  from: string;
  to: string;
  type: string | null;
  topic: string | null;
  /** ms since the epoch, when this page got the event */
  at: number;
  status: "accepted" | "delivered" | "dead";
  recipients: string[];
  /** From the `message.accepted` event: null when the message has none (or the bus did not say). */
  correlationId: string | null;
  /** The conversation it belongs to (`/traces/:traceId`), and the message it followed from. */
  traceId: string | null;
  parentId: string | null;
}

/** The socket dropped and came back: events in between were missed. */
export interface FeedGap {
  kind: "gap";
  id: string;
  at: number;
  since: number | null;
}

export type FeedItem = FeedMessage | FeedGap;

export function matchesFeed(item: FeedItem, f: FeedFilters): boolean {
  if (item.kind === "gap") return true;
  if (f.sandbox && item.from !== f.sandbox && item.to !== f.sandbox && !item.recipients.includes(f.sandbox)) return false;
  if (f.type && item.type !== f.type) return false;
  if (f.topic && (!item.topic || !topicMatches(f.topic, item.topic))) return false;
  if (f.correlation && item.correlationId !== f.correlation) return false;
  return true;
}

export interface FeedState {
  /** Shown, newest first. */
  items: FeedItem[];
  /** Arrived while paused, newest first: counted, not shown. */
  pending: FeedItem[];
  paused: boolean;
}

export const EMPTY_FEED: FeedState = { items: [], pending: [], paused: false };

export type FeedAction =
  | { type: "add"; item: FeedItem }
  | { type: "update"; id: string; patch: Partial<Omit<FeedMessage, "kind" | "id">> }
  /** scroll (`atNewest`: the newest entry is in view), pause, resume: the rule of follow.ts. */
  | FollowAction
  | { type: "clear" };

export const MAX_FEED = 500;

function patchItems(items: FeedItem[], id: string, patch: Partial<Omit<FeedMessage, "kind" | "id">>): FeedItem[] {
  let changed = false;
  const next = items.map((item) => {
    if (item.kind !== "message" || item.id !== id) return item;
    changed = true;
    return { ...item, ...patch };
  });
  return changed ? next : items;
}

export function feedReducer(state: FeedState, action: FeedAction): FeedState {
  switch (action.type) {
    case "add": {
      const { item } = action;
      // A repeated event (the bus may announce one twice) adds nothing.
      if (item.kind === "message" && (state.items.some((i) => i.id === item.id) || state.pending.some((i) => i.id === item.id))) {
        return state;
      }
      if (state.paused) return { ...state, pending: [item, ...state.pending].slice(0, MAX_FEED) };
      return { ...state, items: [item, ...state.items].slice(0, MAX_FEED) };
    }
    case "update": {
      const items = patchItems(state.items, action.id, action.patch);
      const pending = patchItems(state.pending, action.id, action.patch);
      return items === state.items && pending === state.pending ? state : { ...state, items, pending };
    }
    case "scroll":
    case "pause":
    case "resume": {
      const step = followStep(state.paused, action);
      return step === "resume" ? resume(state) : step === "pause" ? { ...state, paused: true } : state;
    }
    case "clear":
      return { ...EMPTY_FEED, paused: state.paused };
  }
}

function resume(state: FeedState): FeedState {
  return { items: [...state.pending, ...state.items].slice(0, MAX_FEED), pending: [], paused: false };
}

/** The feed entry a `message.accepted` event makes (with its correlation, trace and parent ids). */
export function feedMessageFrom(event: BusEvent): FeedMessage | null {
  const d = event.data;
  const id = str(d.message_id);
  const from = str(d.from_sandbox);
  const to = str(d.to_sandbox);
  if (!id || !from || !to) return null;
  return {
    kind: "message",
    id,
    from,
    to,
    type: str(d.message_type),
    topic: str(d.topic),
    at: event.receivedAt,
    status: "accepted",
    recipients: [],
    correlationId: str(d.correlation_id),
    traceId: str(d.trace_id),
    parentId: str(d.parent_id),
  };
}
