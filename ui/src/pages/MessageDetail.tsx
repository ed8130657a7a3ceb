import { FileQuestion, RefreshCw, Waypoints } from "lucide-react";
import { Link, useParams } from "react-router";
import type { Schemas } from "@/api/client";
import { ApiError } from "@/api/errors";
import { useAuth } from "@/auth/auth";
import { EmptyState } from "@/components/EmptyState";
import { JsonBlock } from "@/components/JsonBlock";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Badge, type BadgeProps } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardHeader, CardTitle } from "@/components/ui/card";
import { useBusEvents } from "@/lib/events";
import { formatTime } from "@/lib/format";
import { between, formatDuration, traceOf } from "@/lib/messages";
import { useApi, useDebounced } from "@/lib/useApi";

const EVENTS = ["message.delivered", "message.dead_lettered", "dead_letter.replayed", "message.rerouted", "request.unanswered"] as const;

export const STATE_VARIANT: Record<string, BadgeProps["variant"]> = {
  accepted: "warning",
  delivered: "success",
  acked: "success",
  dead: "destructive",
  rerouted: "outline",
  answered: "success",
  awaiting: "warning",
  unanswered: "destructive",
};

export function MessageDetail() {
  const { messageId = "" } = useParams();
  const { api } = useAuth();
  const q = useApi((signal) => api.get("/api/v1/messages/{message_id}", { path: { message_id: messageId }, signal }), [api, messageId]);
  const refetch = useDebounced(q.reload, 400);
  useBusEvents(EVENTS, (event) => {
    if (event === null || event.data.message_id === messageId) refetch();
  });
  const report = q.data;
  const missing = q.error instanceof ApiError && q.error.status === 404;

  return (
    <>
      <PageHeader
        title="Message"
        description={<span className="font-mono break-all">{messageId}</span>}
        actions={
          <Button variant="outline" size="sm" onClick={q.reload} aria-busy={q.loading}>
            <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
            Refresh
          </Button>
        }
      />
      {missing ? (
        <EmptyState icon={FileQuestion} title="No such message">
          <p>The bus knows no message with this id.</p>
        </EmptyState>
      ) : (
        <>
          <QueryError error={q.error} stale={report !== undefined} />
          {report === undefined ? !q.error && <Loading what="the message" /> : <Report report={report} />}
        </>
      )}
    </>
  );
}

function Report({ report }: { report: Schemas["DeliveryReport"] }) {
  const m = report.message;
  const trace = traceOf(m.metadata);
  return (
    <div className="grid gap-4 lg:grid-cols-2">
      <Card aria-labelledby="msg-summary">
        <CardHeader>
          <CardTitle id="msg-summary">Summary</CardTitle>
        </CardHeader>
        <CardContent>
          <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-1.5 text-sm" data-testid="message-summary">
            <dt className="font-medium">Status</dt>
            <dd>
              <Badge variant={STATE_VARIANT[report.status] ?? "default"} data-testid="message-status">
                {report.status}
              </Badge>
            </dd>
            <dt className="font-medium">Type</dt>
            <dd>
              {m.message_type}
              {m.requires_response && " (requires a response)"}
            </dd>
            <dt className="font-medium">From</dt>
            <dd className="font-mono text-xs">
              {m.from_sandbox} / {m.from_agent}
            </dd>
            <dt className="font-medium">To</dt>
            <dd className="font-mono text-xs">
              {m.to_sandbox} / {m.to_agent}
            </dd>
            {m.topic && (
              <>
                <dt className="font-medium">Topic</dt>
                <dd className="font-mono text-xs">{m.topic}</dd>
              </>
            )}
            <dt className="font-medium">Priority</dt>
            <dd>{m.priority}</dd>
            <dt className="font-medium">Correlation id</dt>
            <dd className="font-mono text-xs break-all">{m.correlation_id ?? <span className="text-muted-foreground">none</span>}</dd>
            <dt className="font-medium">TTL</dt>
            <dd>{m.ttl === null || m.ttl === undefined ? "none" : `${m.ttl} s`}</dd>
            <dt className="font-medium">Accepted</dt>
            <dd>{formatTime(report.accepted_at)}</dd>
            <dt className="font-medium">Routed</dt>
            <dd>
              {report.routed_at ? `${formatTime(report.routed_at)} (+${formatDuration(between(report.accepted_at, report.routed_at))})` : "not yet"}
            </dd>
            {report.response_state && (
              <>
                <dt className="font-medium">Response</dt>
                <dd>
                  <Badge variant={STATE_VARIANT[report.response_state] ?? "default"}>{report.response_state}</Badge>
                </dd>
              </>
            )}
            <dt className="font-medium">Trace</dt>
            <dd>
              {trace ? (
                <span className="flex flex-wrap items-center gap-2">
                  <Link className="inline-flex items-center gap-1 text-primary underline" to={`/traces/${encodeURIComponent(trace.traceId)}`}>
                    <Waypoints aria-hidden="true" className="size-4" />
                    Open its trace
                  </Link>
                  <span className="text-xs text-muted-foreground">
                    hop {trace.hops ?? "?"}
                    {trace.parentId && (
                      <>
                        {", follows "}
                        <Link className="font-mono text-primary underline" to={`/messages/${encodeURIComponent(trace.parentId)}`}>
                          {trace.parentId.slice(0, 8)}…
                        </Link>
                      </>
                    )}
                  </span>
                </span>
              ) : (
                <span className="text-muted-foreground">none</span>
              )}
            </dd>
          </dl>
        </CardContent>
      </Card>
      <Card aria-labelledby="msg-content">
        <CardHeader>
          <CardTitle id="msg-content">Content</CardTitle>
        </CardHeader>
        <CardContent className="flex flex-col gap-2">
          <JsonBlock value={m.content} label="Message content" />
          <details>
            <summary className="cursor-pointer text-sm font-medium">Metadata</summary>
            <JsonBlock value={m.metadata} label="Message metadata" className="mt-2" />
          </details>
        </CardContent>
      </Card>
      <Card aria-labelledby="msg-deliveries" className="lg:col-span-2">
        <CardHeader>
          <CardTitle id="msg-deliveries">Deliveries ({report.deliveries.length})</CardTitle>
        </CardHeader>
        <CardContent>
          {report.deliveries.length === 0 ? (
            <p className="text-sm text-muted-foreground">
              {report.status === "accepted" ? "Not routed yet: no mailbox holds it." : "It reached no mailbox."}
            </p>
          ) : (
            <div tabIndex={0} role="region" aria-label="Deliveries table" className="overflow-x-auto">
              <table className="w-full min-w-[40rem] text-sm">
                <thead className="text-left">
                  <tr>
                    {["Recipient", "Seq", "State", "Attempts", "Delivered", "Acknowledged", "Time to ACK"].map((h) => (
                      <th key={h} scope="col" className="px-2 py-1 font-medium">
                        {h}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {report.deliveries.map((d) => (
                    <tr key={`${d.sandbox_id}-${d.seq}`} className="border-t border-border" data-delivery={d.sandbox_id}>
                      <th scope="row" className="px-2 py-1 text-left font-mono text-xs font-medium">
                        {d.sandbox_id}
                      </th>
                      <td className="px-2 py-1">{d.seq}</td>
                      <td className="px-2 py-1">
                        <Badge variant={STATE_VARIANT[d.state] ?? "default"}>{d.state}</Badge>
                      </td>
                      <td className="px-2 py-1">{d.attempts}</td>
                      <td className="px-2 py-1">{formatTime(d.delivered_at)}</td>
                      <td className="px-2 py-1">{d.acked_at ? formatTime(d.acked_at) : "—"}</td>
                      <td className="px-2 py-1">{formatDuration(between(d.delivered_at, d.acked_at))}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </CardContent>
      </Card>
      <Card aria-labelledby="msg-dead">
        <CardHeader>
          <CardTitle id="msg-dead">Dead letters ({report.dead_letters.length})</CardTitle>
        </CardHeader>
        <CardContent>
          {report.dead_letters.length === 0 ? (
            <p className="text-sm text-muted-foreground">None.</p>
          ) : (
            <>
              <ul className="flex flex-col gap-2 text-sm">
                {report.dead_letters.map((dl, i) => (
                  <li key={i} className="rounded-md border border-destructive/40 p-2">
                    <Badge variant="destructive">{dl.reason}</Badge> <span className="font-mono text-xs">{dl.sandbox_id ?? "broadcast"}</span>{" "}
                    <span className="text-muted-foreground">{formatTime(dl.created_at)}</span>
                    {dl.last_error && <p className="mt-1 break-words">{dl.last_error}</p>}
                  </li>
                ))}
              </ul>
              <Link className="mt-2 inline-block text-sm text-primary underline" to={`/dead-letters?message_id=${encodeURIComponent(report.message.message_id)}`}>
                Replay or purge them on the Dead letters page
              </Link>
            </>
          )}
        </CardContent>
      </Card>
      <Card aria-labelledby="msg-responses">
        <CardHeader>
          <CardTitle id="msg-responses">Responses ({report.responses.length})</CardTitle>
        </CardHeader>
        <CardContent>
          {report.responses.length === 0 ? (
            <p className="text-sm text-muted-foreground">
              {m.message_type === "request" ? "No response yet." : "Only requests get responses."}
            </p>
          ) : (
            <ul className="flex flex-col gap-1 text-sm">
              {report.responses.map((r) => (
                <li key={r.message_id} className="flex flex-wrap items-center gap-2">
                  <Link className="font-mono text-xs text-primary underline" to={`/messages/${encodeURIComponent(r.message_id)}`}>
                    {r.message_id}
                  </Link>
                  <span className="font-mono text-xs">
                    from {r.from_sandbox} / {r.from_agent}
                  </span>
                  <Badge variant={STATE_VARIANT[r.status] ?? "default"}>{r.status}</Badge>
                  <span className="text-muted-foreground">{formatTime(r.accepted_at)}</span>
                </li>
              ))}
            </ul>
          )}
        </CardContent>
      </Card>
    </div>
  );
}
