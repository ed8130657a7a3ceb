import { AlertTriangle, FileQuestion, RefreshCw, Waypoints } from "lucide-react";
import { useEffect, useId, useState, type FormEvent } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { ApiError } from "@/api/errors";
import { useAuth } from "@/auth/auth";
import { EmptyState } from "@/components/EmptyState";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input, Label } from "@/components/ui/input";
import { isoToLocalInput, localInputToIso } from "@/lib/deadLetters";
import { useBusEvents } from "@/lib/events";
import { isIdentifier } from "@/lib/filters";
import { formatAgo, formatTime } from "@/lib/format";
import { formatDuration } from "@/lib/messages";
import { applyTraceFilters, childrenOf, layoutTimeline, parseTraceFilters, type TimelineRow, type TraceFilters, type TraceNode } from "@/lib/trace";
import { useApi, useDebounced, useNow } from "@/lib/useApi";
import { cn } from "@/lib/utils";
import { STATE_VARIANT } from "./MessageDetail";

const LIST_EVENTS = ["message.accepted", "message.dead_lettered"] as const;

export function Traces() {
  const { api } = useAuth();
  const [searchParams, setSearchParams] = useSearchParams();
  const { invalid, ...filters } = parseTraceFilters(searchParams, isIdentifier);
  const now = useNow(10_000);
  const q = useApi(
    (signal) => api.get("/api/v1/traces", { query: { sandbox: filters.sandbox ?? undefined, since: filters.since ?? undefined, limit: 100 } as never, signal }),
    [api, filters.sandbox, filters.since],
  );
  const refetch = useDebounced(q.reload, 2000);
  useBusEvents(LIST_EVENTS, refetch);
  const filtered = filters.sandbox !== null || filters.since !== null;
  const traces = q.data?.traces;

  return (
    <>
      <PageHeader
        title="Traces"
        description="Conversations: every message that followed from another, latest active first."
        actions={
          <Button variant="outline" size="sm" onClick={q.reload} aria-busy={q.loading}>
            <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
            Refresh
          </Button>
        }
      />
      <TraceFilterForm filters={filters} onApply={(f) => setSearchParams(applyTraceFilters(f, searchParams), { replace: true })} />
      {invalid.length > 0 && (
        <Alert variant="warning" className="mb-4" role="status">
          The address had an invalid {invalid.join(" and ")} filter; it is ignored.
        </Alert>
      )}
      <QueryError error={q.error} stale={traces !== undefined} />
      {traces === undefined ? (
        !q.error && <Loading what="traces" />
      ) : traces.length === 0 ? (
        <EmptyState icon={Waypoints} title={filtered ? "No trace matches these filters" : "No conversations yet"}>
          <p>A trace starts with every message that does not follow from another; replies and the messages sent while handling one join it.</p>
        </EmptyState>
      ) : (
        <>
          <p className="mb-2 text-sm text-muted-foreground">
            {traces.length} conversation{traces.length === 1 ? "" : "s"}
            {traces.length === 100 ? " (the latest 100)" : ""}.
          </p>
          <div tabIndex={0} role="region" aria-label="Traces table" className="overflow-x-auto rounded-lg border border-border">
            <table className="w-full min-w-[56rem] text-sm">
              <caption className="sr-only">Traces{filtered ? " (filtered)" : ""}</caption>
              <thead className="bg-muted text-left">
                <tr>
                  {["Trace", "Started by", "Started", "Last message", "Messages", "Max hops", "Sandboxes", "Dead"].map((h) => (
                    <th key={h} scope="col" className="px-3 py-2 font-medium">
                      {h}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {traces.map((t) => (
                  <tr key={t.trace_id} className="border-t border-border align-top" data-trace-id={t.trace_id}>
                    <th scope="row" className="px-3 py-2 text-left font-mono text-xs font-medium">
                      <Link className="text-primary underline" to={`/traces/${encodeURIComponent(t.trace_id)}`}>
                        {t.trace_id}
                      </Link>
                    </th>
                    <td className="px-3 py-2 font-mono text-xs">{t.root_from_sandbox}</td>
                    <td className="px-3 py-2 whitespace-nowrap" title={formatTime(t.started_at)}>
                      {formatAgo(t.started_at, now)}
                    </td>
                    <td className="px-3 py-2 whitespace-nowrap" title={formatTime(t.last_at)}>
                      {formatAgo(t.last_at, now)}
                    </td>
                    <td className="px-3 py-2">{t.message_count}</td>
                    <td className="px-3 py-2">{t.max_hops}</td>
                    <td className="px-3 py-2 font-mono text-xs">{t.sandboxes.join(", ")}</td>
                    <td className="px-3 py-2">{t.dead_messages > 0 ? <Badge variant="destructive">{t.dead_messages} dead</Badge> : "0"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </>
  );
}

function TraceFilterForm({ filters, onApply }: { filters: TraceFilters; onApply: (f: TraceFilters) => void }) {
  const sandboxId = useId();
  const sinceId = useId();
  const [sandbox, setSandbox] = useState(filters.sandbox ?? "");
  const [since, setSince] = useState(isoToLocalInput(filters.since));
  useEffect(() => setSandbox(filters.sandbox ?? ""), [filters.sandbox]);
  useEffect(() => setSince(isoToLocalInput(filters.since)), [filters.since]);
  const bad = sandbox.trim() !== "" && !isIdentifier(sandbox.trim());

  function submit(e: FormEvent) {
    e.preventDefault();
    if (bad) return;
    onApply({ sandbox: sandbox.trim() || null, since: localInputToIso(since) });
  }

  return (
    <form role="search" aria-label="Filter traces" className="mb-4 flex flex-wrap items-end gap-3" onSubmit={submit}>
      <div className="flex w-52 flex-col gap-1.5">
        <Label htmlFor={sandboxId}>Sandbox</Label>
        <Input id={sandboxId} value={sandbox} aria-invalid={bad} onChange={(e) => setSandbox(e.target.value)} />
      </div>
      <div className="flex w-56 flex-col gap-1.5">
        <Label htmlFor={sinceId}>Active since</Label>
        <Input id={sinceId} type="datetime-local" value={since} onChange={(e) => setSince(e.target.value)} />
      </div>
      <Button type="submit">Apply filters</Button>
      {(filters.sandbox || filters.since) && (
        <Button variant="ghost" onClick={() => onApply({ sandbox: null, since: null })}>
          Clear filters
        </Button>
      )}
      {bad && (
        <p role="alert" className="w-full text-sm text-destructive">
          The sandbox is not a valid identifier.
        </p>
      )}
    </form>
  );
}

// ---------- one trace ----------

const TRACE_EVENTS = ["message.accepted", "message.delivered", "message.dead_lettered", "dead_letter.replayed"] as const;

export function TraceDetail() {
  const { traceId = "" } = useParams();
  const { api } = useAuth();
  const q = useApi((signal) => api.get("/api/v1/traces/{trace_id}", { path: { trace_id: traceId }, signal }), [api, traceId]);
  const refetch = useDebounced(q.reload, 1500);
  useBusEvents(TRACE_EVENTS, refetch);
  const trace = q.data;
  const missing = q.error instanceof ApiError && q.error.status === 404;
  const timeline = trace ? layoutTimeline(trace.roots) : null;
  const failed = timeline?.rows.filter((r) => r.failed).length ?? 0;

  return (
    <>
      <PageHeader
        title="Trace"
        description={<span className="font-mono break-all">{traceId}</span>}
        actions={
          <Button variant="outline" size="sm" onClick={q.reload} aria-busy={q.loading}>
            <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
            Refresh
          </Button>
        }
      />
      <p className="mb-4 text-sm">
        <Link className="text-primary underline" to="/traces">
          All traces
        </Link>
      </p>
      {missing ? (
        <EmptyState icon={FileQuestion} title="No such trace">
          <p>The bus knows no conversation with this id.</p>
        </EmptyState>
      ) : (
        <>
          <QueryError error={q.error} stale={trace !== undefined} />
          {trace === undefined || timeline === null ? (
            !q.error && <Loading what="the trace" />
          ) : (
            <div className="flex flex-col gap-4">
              <p className="text-sm" data-testid="trace-summary">
                {trace.message_count} message{trace.message_count === 1 ? "" : "s"} over {formatDuration(timeline.durationMs)}
                {failed > 0 ? `; ${failed} with failures` : "; no failures"}.
              </p>
              {trace.truncated && (
                <Alert variant="warning" role="status">
                  The trace is larger than the bus returns at once: only part of it is shown.
                </Alert>
              )}
              <Card aria-labelledby="trace-tree">
                <CardHeader>
                  <CardTitle id="trace-tree">Conversation</CardTitle>
                  <CardDescription>Each message under the one it followed from.</CardDescription>
                </CardHeader>
                <CardContent>
                  <ul className="flex flex-col gap-1 text-sm" aria-label="Conversation tree">
                    {trace.roots.map((root) => (
                      <TreeNode key={root.message.message_id} node={root} />
                    ))}
                  </ul>
                </CardContent>
              </Card>
              <Card aria-labelledby="trace-timeline">
                <CardHeader>
                  <CardTitle id="trace-timeline">Timeline</CardTitle>
                  <CardDescription>
                    Per message: accepted (dot), routing (thin line), then per recipient delivered → acknowledged (bar; open
                    when not acknowledged). Failures are red.
                  </CardDescription>
                </CardHeader>
                <CardContent>
                  <ol className="flex flex-col gap-2" aria-label="Timeline of the hops">
                    {timeline.rows.map((row) => (
                      <TimelineItem key={row.id} row={row} />
                    ))}
                  </ol>
                  <div className="mt-2 flex justify-between text-xs text-muted-foreground" aria-hidden="true">
                    <span>{formatTime(new Date(timeline.start).toISOString())}</span>
                    <span>+{formatDuration(timeline.durationMs)}</span>
                  </div>
                </CardContent>
              </Card>
            </div>
          )}
        </>
      )}
    </>
  );
}

function TreeNode({ node }: { node: TraceNode }) {
  const m = node.message;
  const kids = childrenOf(node);
  const failed = node.status === "dead" || node.dead_letters.length > 0;
  return (
    <li>
      <div className={cn("flex flex-wrap items-center gap-2 rounded px-1 py-0.5", failed && "bg-destructive/10")}>
        <Badge>{m.message_type}</Badge>
        <Link className="font-mono text-xs text-primary underline" to={`/messages/${encodeURIComponent(m.message_id)}`}>
          {m.from_sandbox} → {m.to_sandbox}
          {m.topic ? ` (${m.topic})` : ""}
        </Link>
        <Badge variant={STATE_VARIANT[node.status] ?? "outline"}>{node.status}</Badge>
        {node.dead_letters.map((d, i) => (
          <Badge key={i} variant="destructive">
            <AlertTriangle aria-hidden="true" className="size-3" />
            {d.reason}
            {d.sandbox_id ? ` at ${d.sandbox_id}` : ""}
          </Badge>
        ))}
        <span className="text-xs text-muted-foreground">hop {node.hops}</span>
      </div>
      {kids.length > 0 && (
        <ul className="ml-4 mt-1 flex flex-col gap-1 border-l border-border pl-3">
          {kids.map((k) => (
            <TreeNode key={k.message.message_id} node={k} />
          ))}
        </ul>
      )}
    </li>
  );
}

/** Where a hop's bar ends: its ACK, the dead letter that ended it, or (still open) the end of the axis. */
function hopEnd(row: TimelineRow, h: TimelineRow["hops"][number]): number {
  if (h.ackedAt !== null) return h.ackedAt;
  if (h.failed) return row.failures.find((f) => f.recipient === h.recipient)?.at ?? h.deliveredAt;
  return 1;
}

const pct = (x: number) => `${Math.max(0, Math.min(100, x * 100))}%`;

function TimelineItem({ row }: { row: TimelineRow }) {
  return (
    <li
      data-message-id={row.id}
      data-failed={row.failed ? "true" : "false"}
      className={cn("grid gap-2 rounded-md border p-2 md:grid-cols-[18rem_1fr]", row.failed ? "border-destructive/60 bg-destructive/5" : "border-border")}
    >
      <div className="min-w-0 text-xs" style={{ paddingLeft: `${Math.min(row.depth, 8) * 0.75}rem` }}>
        <div className="flex flex-wrap items-center gap-1">
          <Badge>{row.type}</Badge>
          <Link className="font-mono text-primary underline" to={`/messages/${encodeURIComponent(row.id)}`}>
            {row.from} → {row.to}
          </Link>
          {row.failed && <Badge variant="destructive">failed</Badge>}
        </div>
        <p className="mt-1 text-muted-foreground">
          routed {row.routeMs === null ? "not yet" : `+${formatDuration(row.routeMs)}`}
          {row.hops.map((h) => (
            <span key={`${h.recipient}-${h.seq}`} className="block">
              {h.recipient}: delivered +{formatDuration(h.deliverMs)}, {h.ackMs !== null ? `acked +${formatDuration(h.ackMs)}` : h.state === "acked" ? "acked" : h.state === "delivered" ? "not acknowledged" : `${h.state}, not acknowledged`}
              {h.attempts > 0 ? ` (${h.attempts} attempt${h.attempts === 1 ? "" : "s"})` : ""}
            </span>
          ))}
          {row.failures.map((f, i) => (
            <span key={i} className="block text-destructive">
              dead letter {f.reason}
              {f.recipient ? ` at ${f.recipient}` : ""}
              {f.error ? `: ${f.error}` : ""}
            </span>
          ))}
        </p>
      </div>
      <div className="relative min-h-6" aria-hidden="true">
        <div className="absolute inset-x-0 top-3 border-t border-dashed border-border" />
        {row.routedAt !== null && (
          <div className="absolute top-[11px] h-1 bg-muted-foreground/60" style={{ left: pct(row.acceptedAt), width: pct(row.routedAt - row.acceptedAt) }} />
        )}
        <div className="absolute top-2 size-2.5 -translate-x-1/2 rounded-full bg-primary" style={{ left: pct(row.acceptedAt) }} />
        {row.hops.map((h, i) => (
          <div
            key={`${h.recipient}-${h.seq}`}
            className={cn(
              "absolute h-2 rounded-sm",
              h.failed ? "bg-destructive" : h.ackedAt === null ? "border border-warning bg-warning/20" : "bg-success",
            )}
            style={{
              top: `${24 + i * 10}px`,
              left: pct(h.deliveredAt),
              width: `max(3px, ${pct(hopEnd(row, h) - h.deliveredAt)})`,
            }}
            title={`${h.recipient}: ${h.state}`}
          />
        ))}
        {row.failures.map((f, i) => (
          <div key={i} className="absolute top-1 h-5 w-1 -translate-x-1/2 bg-destructive" style={{ left: pct(f.at) }} title={f.reason} />
        ))}
        <div style={{ height: `${24 + row.hops.length * 10}px` }} />
      </div>
    </li>
  );
}
