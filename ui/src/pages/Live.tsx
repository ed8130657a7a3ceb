import { Pause, Play, Radio, Waypoints } from "lucide-react";
import { useEffect, useId, useMemo, useReducer, useRef, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router";
import { useAuth } from "@/auth/auth";
import { EmptyState } from "@/components/EmptyState";
import { PageHeader } from "@/components/PageHeader";
import { QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Badge, type BadgeProps } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input, Label, Select } from "@/components/ui/input";
import { useBusEvents, useEventsHub } from "@/lib/events";
import {
  applyFeedFilters,
  circleLayout,
  EMPTY_FEED,
  edgeIntensity,
  feedMessageFrom,
  feedReducer,
  HUBS,
  hitsForEvent,
  isLit,
  matchesFeed,
  MESSAGE_TYPES,
  NO_FEED_FILTERS,
  parseFeedFilters,
  recordHits,
  type Edge,
  type FeedFilters,
  type Pending,
} from "@/lib/live";
import { useApi, useDebounced } from "@/lib/useApi";
import { cn } from "@/lib/utils";

const SANDBOX_EVENTS = ["sandbox.registered", "sandbox.unregistered", "sandbox.online", "sandbox.offline", "sandbox.connected", "sandbox.disconnected"] as const;

export function Live() {
  const { api } = useAuth();
  const hub = useEventsHub();
  const [searchParams, setSearchParams] = useSearchParams();
  const { invalid, ...filters } = parseFeedFilters(searchParams);

  const sandboxes = useApi((signal) => api.get("/api/v1/sandboxes", { signal }), [api], 60_000);
  const refetch = useDebounced(sandboxes.reload, 500);
  useBusEvents(SANDBOX_EVENTS, refetch);

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

  // Redraw while an edge is fading.
  const [now, setNow] = useState(() => Date.now());
  const anyLit = useMemo(() => [...edges.values()].some((e) => isLit(e, now)), [edges, now]);
  useEffect(() => {
    if (!anyLit) return;
    const t = setInterval(() => setNow(Date.now()), 200);
    return () => clearInterval(t);
  }, [anyLit]);
  useEffect(() => setNow(Date.now()), [edges]);

  function setFilters(next: FeedFilters) {
    setSearchParams(applyFeedFilters(next, searchParams), { replace: true });
  }

  const ids = (sandboxes.data?.sandboxes ?? []).map((s) => s.sandbox_id);
  const statuses = new Map((sandboxes.data?.sandboxes ?? []).map((s) => [s.sandbox_id, s.status]));

  return (
    <>
      <PageHeader title="Live" description="Messages as they flow between sandboxes, from the bus's event stream." />
      <QueryError error={sandboxes.error} stale={sandboxes.data !== undefined} />
      <div className="grid gap-4 xl:grid-cols-2">
        <Graph ids={ids} statuses={statuses} edges={edges} now={now} />
        <Feed feed={feed} dispatch={dispatch} filters={filters} invalid={invalid} onFilters={setFilters} sandboxIds={ids} />
      </div>
    </>
  );
}

// ---------- graph ----------

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

const SIZE = 520;
const NODE_R = 18;

function Graph({ ids, statuses, edges, now }: { ids: string[]; statuses: Map<string, string>; edges: Map<string, Edge>; now: number }) {
  const edgeList = [...edges.values()];
  const usedHubs = HUBS.filter((h) => edgeList.some((e) => e.to === h));
  const nodeIds = [...new Set([...ids, ...edgeList.flatMap((e) => [e.from, e.to])])].filter((id) => !(HUBS as readonly string[]).includes(id));
  const layout = circleLayout(nodeIds, SIZE, SIZE, usedHubs);
  const recent = [...edgeList].sort((a, b) => b.lastAt - a.lastAt);
  const lit = recent.filter((e) => isLit(e, now)).length;

  return (
    <Card aria-labelledby="graph-title">
      <CardHeader>
        <CardTitle id="graph-title">Collaboration graph</CardTitle>
        <CardDescription>
          {nodeIds.length} sandbox{nodeIds.length === 1 ? "" : "es"}; an edge lights up when a message passes and fades
          over a few seconds. Broadcasts and topic messages go through the <em>broadcast</em> hub, capability-routed
          ones through <em>any</em>, then to the sandboxes they reached (dashed).
        </CardDescription>
      </CardHeader>
      <CardContent>
        {nodeIds.length === 0 ? (
          <EmptyState icon={Radio} title="No sandboxes yet">
            <p>The graph shows registered sandboxes and the messages between them.</p>
          </EmptyState>
        ) : (
          <svg
            viewBox={`0 0 ${SIZE} ${SIZE}`}
            className="mx-auto aspect-square w-full max-w-[32rem]"
            role="img"
            aria-label={`Graph of ${nodeIds.length} sandboxes with ${edgeList.length} edges, ${lit} lit now; the list below describes them.`}
            data-testid="live-graph"
          >
            {edgeList.map((e) => {
              const a = layout.get(e.from);
              const b = layout.get(e.to);
              if (!a || !b || e.from === e.to) return null;
              const intensity = edgeIntensity(e.lastAt, now);
              const active = intensity > 0;
              const dx = b.x - a.x;
              const dy = b.y - a.y;
              const len = Math.hypot(dx, dy) || 1;
              const rb = (HUBS as readonly string[]).includes(e.to) ? 12 : NODE_R;
              const ux = dx / len;
              const uy = dy / len;
              // Both directions used: draw each a little to its side so they do not overlap.
              const side = edges.has(`${e.to}->${e.from}`) ? 4 : 0;
              const ox = -uy * side;
              const oy = ux * side;
              const tipX = b.x - ux * (rb + 2) + ox;
              const tipY = b.y - uy * (rb + 2) + oy;
              const head = 7 + 3 * intensity;
              const arrow = [
                [tipX, tipY],
                [tipX - ux * head - uy * head * 0.5, tipY - uy * head + ux * head * 0.5],
                [tipX - ux * head + uy * head * 0.5, tipY - uy * head - ux * head * 0.5],
              ]
                .map(([x, y]) => `${round1(x!)},${round1(y!)}`)
                .join(" ");
              return (
                <g key={`${e.from}->${e.to}`} data-edge={`${e.from}->${e.to}`} data-active={active ? "true" : "false"} className={active ? "text-primary" : "text-muted-foreground"}>
                  <line
                    x1={a.x + ux * NODE_R + ox}
                    y1={a.y + uy * NODE_R + oy}
                    x2={tipX - ux * head * 0.8}
                    y2={tipY - uy * head * 0.8}
                    stroke="currentColor"
                    strokeWidth={1.5 + 3 * intensity}
                    strokeOpacity={0.25 + 0.75 * intensity}
                    strokeDasharray={e.kind === "fanout" ? "6 4" : undefined}
                  />
                  <polygon points={arrow} fill="currentColor" fillOpacity={0.25 + 0.75 * intensity} />
                  <title>{`${e.from} → ${e.to}: ${e.count} message${e.count === 1 ? "" : "s"}`}</title>
                </g>
              );
            })}
            {usedHubs.map((h) => {
              const p = layout.get(h)!;
              return (
                <g key={h} data-node={h}>
                  <rect x={p.x - 12} y={p.y - 12} width={24} height={24} rx={4} className="fill-secondary stroke-border" />
                  <text x={p.x} y={p.y + 28} textAnchor="middle" className="fill-muted-foreground text-[11px] italic">
                    {h}
                  </text>
                </g>
              );
            })}
            {nodeIds.map((id) => {
              const p = layout.get(id)!;
              const status = statuses.get(id) ?? "unknown";
              return (
                <g key={id} data-node={id}>
                  <circle
                    cx={p.x}
                    cy={p.y}
                    r={NODE_R}
                    className={cn("stroke-2", status === "online" ? "fill-success/20 stroke-success" : "fill-muted stroke-input")}
                  />
                  <text x={p.x} y={p.y + NODE_R + 14} textAnchor="middle" className="fill-foreground text-[12px]">
                    {id.length > 18 ? `${id.slice(0, 17)}…` : id}
                  </text>
                  <title>{`${id} (${status})`}</title>
                </g>
              );
            })}
          </svg>
        )}
        <h3 className="mt-4 text-sm font-semibold">Recent edges</h3>
        {recent.length === 0 ? (
          <p className="text-sm text-muted-foreground">No message seen yet since this page opened.</p>
        ) : (
          <div tabIndex={0} role="region" aria-label="Recent edges, latest first" className="mt-1 max-h-40 overflow-y-auto">
          <ul className="text-sm">
            {recent.slice(0, 20).map((e) => (
              <li key={`${e.from}->${e.to}`} data-edge-item={`${e.from}->${e.to}`}>
                <span className="font-mono text-xs">
                  {e.from} → {e.to}
                </span>{" "}
                <span className="text-muted-foreground">
                  {e.count} message{e.count === 1 ? "" : "s"}
                  {e.topic ? `, topic ${e.topic}` : ""}
                  {e.kind === "fanout" ? " (delivered via a hub)" : ""}, last {Math.max(0, Math.round((now - e.lastAt) / 1000))} s ago
                  {isLit(e, now) ? " — lit" : ""}
                </span>
              </li>
            ))}
          </ul>
          </div>
        )}
      </CardContent>
    </Card>
  );
}

// ---------- feed ----------

const STATUS_VARIANT: Record<string, BadgeProps["variant"]> = { accepted: "outline", delivered: "success", dead: "destructive" };

function Feed({
  feed,
  dispatch,
  filters,
  invalid,
  onFilters,
  sandboxIds,
}: {
  feed: typeof EMPTY_FEED;
  dispatch: (a: Parameters<typeof feedReducer>[1]) => void;
  filters: FeedFilters;
  invalid: string[];
  onFilters: (f: FeedFilters) => void;
  sandboxIds: string[];
}) {
  const scroller = useRef<HTMLDivElement>(null);
  const shown = feed.items.filter((i) => matchesFeed(i, filters));
  const held = feed.pending.filter((i) => matchesFeed(i, filters) && i.kind === "message").length;
  const filtered = filters.sandbox !== null || filters.type !== null || filters.topic !== null || filters.correlation !== null;

  function resume() {
    dispatch({ type: "resume" });
    if (scroller.current) scroller.current.scrollTop = 0;
  }

  return (
    <Card aria-labelledby="feed-title">
      <CardHeader>
        <CardTitle id="feed-title">Message feed</CardTitle>
        <CardDescription>Newest first. Scroll down to read: the feed holds new messages until you resume.</CardDescription>
      </CardHeader>
      <CardContent className="flex flex-col gap-3">
        <FeedFilterForm filters={filters} onApply={onFilters} sandboxIds={sandboxIds} />
        {invalid.length > 0 && (
          <Alert variant="warning" role="status">
            The address had an invalid {invalid.join(", ")} filter; it is ignored.
          </Alert>
        )}
        <div className="flex flex-wrap items-center gap-2">
          {feed.paused ? (
            <Button size="sm" onClick={resume} data-testid="feed-resume">
              <Play aria-hidden="true" />
              {held} new — resume
            </Button>
          ) : (
            <Button size="sm" variant="outline" onClick={() => dispatch({ type: "pause" })} data-testid="feed-pause">
              <Pause aria-hidden="true" />
              Pause feed
            </Button>
          )}
          <span role="status" className="text-sm text-muted-foreground" data-testid="feed-state" data-paused={feed.paused ? "true" : "false"}>
            {feed.paused ? `Paused: ${held} new message${held === 1 ? "" : "s"} held.` : "Following new messages."}
          </span>
          <Button size="sm" variant="ghost" className="ml-auto" onClick={() => dispatch({ type: "clear" })}>
            Clear feed
          </Button>
        </div>
        <div
          ref={scroller}
          tabIndex={0}
          role="region"
          aria-label="Message feed entries"
          data-testid="feed"
          className="h-[28rem] overflow-y-auto rounded-md border border-border"
          onScroll={(e) => dispatch({ type: "scroll", atNewest: e.currentTarget.scrollTop < 8 })}
        >
          {shown.length === 0 ? (
            <p className="p-4 text-sm text-muted-foreground">
              {feed.items.length > 0 && filtered
                ? `None of the ${feed.items.length} messages seen matches the filters.`
                : "Waiting for messages. They appear here as the bus accepts them (live only: earlier conversations are under Traces)."}
            </p>
          ) : (
            <ol className="divide-y divide-border">
              {shown.map((item) =>
                item.kind === "gap" ? (
                  <li key={item.id} className="bg-warning/10 px-3 py-2 text-xs" data-feed-gap>
                    Reconnected at {new Date(item.at).toLocaleTimeString()}: messages since{" "}
                    {item.since ? new Date(item.since).toLocaleTimeString() : "the last one seen"} may be missing here (the
                    bus could not replay them: another API node answered, it restarted, or the page was away too long).
                  </li>
                ) : (
                  <li key={item.id} className="flex flex-wrap items-center gap-x-2 gap-y-1 px-3 py-2 text-sm" data-message-id={item.id}>
                    <time className="text-xs text-muted-foreground tabular-nums" dateTime={new Date(item.at).toISOString()}>
                      {new Date(item.at).toLocaleTimeString()}
                    </time>
                    <Badge variant="default">{item.type ?? "message"}</Badge>
                    <span className="font-mono text-xs">
                      {item.from} → {item.to}
                    </span>
                    {item.topic && <Badge variant="outline">topic {item.topic}</Badge>}
                    <Badge variant={STATUS_VARIANT[item.status] ?? "outline"}>
                      {item.status}
                      {item.status === "delivered" && item.to === "broadcast" ? ` to ${item.recipients.length}` : ""}
                    </Badge>
                    {item.correlationId && (
                      <span className="max-w-full truncate text-xs text-muted-foreground" title={`correlation id ${item.correlationId}`}>
                        correlation <span className="font-mono">{item.correlationId}</span>
                      </span>
                    )}
                    <span className="ml-auto flex max-w-full min-w-0 items-center gap-3">
                      <Link className="min-w-0 truncate font-mono text-xs text-primary underline" to={`/messages/${encodeURIComponent(item.id)}`}>
                        {item.id}
                      </Link>
                      {item.traceId && (
                        <Link
                          className="inline-flex shrink-0 items-center gap-1 text-xs text-primary underline"
                          to={`/traces/${encodeURIComponent(item.traceId)}`}
                          title={`trace ${item.traceId}`}
                          data-trace-id={item.traceId}
                        >
                          <Waypoints aria-hidden="true" className="size-3.5" />
                          trace
                        </Link>
                      )}
                    </span>
                  </li>
                ),
              )}
            </ol>
          )}
        </div>
      </CardContent>
    </Card>
  );
}

function FeedFilterForm({ filters, onApply, sandboxIds }: { filters: FeedFilters; onApply: (f: FeedFilters) => void; sandboxIds: string[] }) {
  const ids = { sandbox: useId(), type: useId(), topic: useId(), correlation: useId() };
  const [topic, setTopic] = useState(filters.topic ?? "");
  const [correlation, setCorrelation] = useState(filters.correlation ?? "");
  useEffect(() => setTopic(filters.topic ?? ""), [filters.topic]);
  useEffect(() => setCorrelation(filters.correlation ?? ""), [filters.correlation]);
  const options = [...new Set([...sandboxIds, ...(filters.sandbox ? [filters.sandbox] : [])])].sort((a, b) => a.localeCompare(b));
  const any = filters.sandbox !== null || filters.type !== null || filters.topic !== null || filters.correlation !== null;

  function submit(e: FormEvent) {
    e.preventDefault();
    const parsed = parseFeedFilters(applyFeedFilters({ ...filters, topic: topic.trim() || null, correlation: correlation.trim() || null }));
    onApply({ sandbox: parsed.sandbox, type: parsed.type, topic: parsed.topic, correlation: parsed.correlation });
  }

  return (
    <form role="search" aria-label="Filter the feed" className="grid gap-3 sm:grid-cols-2" onSubmit={submit}>
      <div className="flex flex-col gap-1.5">
        <Label htmlFor={ids.sandbox}>Sandbox</Label>
        <Select id={ids.sandbox} value={filters.sandbox ?? ""} onChange={(e) => onApply({ ...filters, sandbox: e.target.value || null })}>
          <option value="">Any sandbox</option>
          {options.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </Select>
      </div>
      <div className="flex flex-col gap-1.5">
        <Label htmlFor={ids.type}>Type</Label>
        <Select id={ids.type} value={filters.type ?? ""} onChange={(e) => onApply({ ...filters, type: (e.target.value || null) as FeedFilters["type"] })}>
          <option value="">Any type</option>
          {MESSAGE_TYPES.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </Select>
      </div>
      <div className="flex flex-col gap-1.5">
        <Label htmlFor={ids.topic}>Topic</Label>
        <Input id={ids.topic} value={topic} onChange={(e) => setTopic(e.target.value)} aria-describedby={`${ids.topic}-hint`} />
        <span id={`${ids.topic}-hint`} className="text-xs text-muted-foreground">
          e.g. team.# or team.*
        </span>
      </div>
      <div className="flex flex-col gap-1.5">
        <Label htmlFor={ids.correlation}>Correlation id</Label>
        <Input id={ids.correlation} value={correlation} onChange={(e) => setCorrelation(e.target.value)} />
      </div>
      <div className="col-span-full flex gap-2">
        <Button type="submit" size="sm">
          Apply filters
        </Button>
        {any && (
          <Button size="sm" variant="ghost" onClick={() => onApply(NO_FEED_FILTERS)}>
            Clear filters
          </Button>
        )}
      </div>
    </form>
  );
}
