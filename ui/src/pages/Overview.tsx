import { Link } from "react-router";
import { useAuth } from "@/auth/auth";
import { PageHeader } from "@/components/PageHeader";
import { Readiness } from "@/components/Readiness";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Sparkline } from "@/components/Sparkline";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { useBusEvents, useEventsHub, useSocketStatus } from "@/lib/events";
import { formatRate } from "@/lib/format";
import { countByReason, countByStatus } from "@/lib/overview";
import { BUCKET_MS, bucketize } from "@/lib/rate";
import { useApi, useDebounced, useNow } from "@/lib/useApi";

const DEAD_LETTER_PAGE = 1000;

export function Overview() {
  return (
    <>
      <PageHeader title="Overview" description="The bus at a glance. Figures refresh by themselves." />
      <div className="grid gap-4 lg:grid-cols-2">
        <SandboxesCard />
        <HealthCard />
        <MessageRateCard />
        <DeadLettersCard />
      </div>
    </>
  );
}

function SandboxesCard() {
  const { api } = useAuth();
  const q = useApi(
    (signal) => api.get("/api/v1/sandboxes", { query: { include_unregistered: true }, signal }),
    [api],
    30_000,
  );
  const refetch = useDebounced(q.reload, 500);
  useBusEvents(
    [
      "sandbox.registered",
      "sandbox.unregistered",
      "sandbox.connected",
      "sandbox.disconnected",
      "sandbox.online",
      "sandbox.offline",
    ],
    refetch,
  );
  const counts = q.data ? countByStatus(q.data.sandboxes) : null;
  return (
    <Card aria-labelledby="card-sandboxes">
      <CardHeader>
        <CardTitle id="card-sandboxes">Sandboxes by status</CardTitle>
        <CardDescription>
          <Link className="text-primary underline" to="/sandboxes">
            See every sandbox
          </Link>
        </CardDescription>
      </CardHeader>
      <CardContent>
        {counts ? (
          <dl className="grid grid-cols-3 gap-2 text-center">
            <Stat label="Online" value={counts.online} to="/sandboxes?status=online" />
            <Stat label="Offline" value={counts.offline} to="/sandboxes?status=offline" />
            <Stat label="Unregistered" value={counts.unregistered} to="/sandboxes?status=unregistered" />
          </dl>
        ) : (
          !q.error && <Loading what="sandboxes" />
        )}
        <QueryError error={q.error} stale={q.data !== undefined} />
      </CardContent>
    </Card>
  );
}

function Stat({ label, value, to }: { label: string; value: number; to: string }) {
  return (
    <div className="min-w-0 rounded-md bg-muted p-2 sm:p-3">
      <dt className="text-xs font-medium break-words text-muted-foreground">{label}</dt>
      <dd className="text-2xl font-semibold tabular-nums">
        <Link to={to} className="hover:underline" aria-label={`${value} ${label.toLowerCase()}: list them`}>
          {value}
        </Link>
      </dd>
    </div>
  );
}

function HealthCard() {
  const { api } = useAuth();
  const ready = useApi((signal) => api.get("/readyz", { signal }), [api], 15_000);
  const status = useApi((signal) => api.get("/api/v1/collaboration/status", { signal }), [api], 15_000);

  const s = status.data;
  return (
    <Card aria-labelledby="card-health">
      <CardHeader>
        <CardTitle id="card-health">Health</CardTitle>
        <CardDescription>Readiness (database, broker) and what the bus is doing.</CardDescription>
      </CardHeader>
      <CardContent className="flex flex-col gap-4">
        <Readiness ready={ready} />

        {s ? (
          <>
            <dl className="grid grid-cols-2 gap-x-4 gap-y-1 text-sm sm:grid-cols-4">
              <dt className="text-muted-foreground">Connected</dt>
              <dd className="tabular-nums">{s.connected}</dd>
              <dt className="text-muted-foreground">Accepted / s</dt>
              <dd className="tabular-nums" title="last 60 s (last 5 min)">
                {formatRate(s.message_rates.last_60s.accepted)} ({formatRate(s.message_rates.last_300s.accepted)})
              </dd>
              <dt className="text-muted-foreground">Delivered / s</dt>
              <dd className="tabular-nums" title="last 60 s (last 5 min)">
                {formatRate(s.message_rates.last_60s.delivered)} ({formatRate(s.message_rates.last_300s.delivered)})
              </dd>
              <dt className="text-muted-foreground">Dead-lettered / s</dt>
              <dd className="tabular-nums" title="last 60 s (last 5 min)">
                {formatRate(s.message_rates.last_60s.dead_lettered)} (
                {formatRate(s.message_rates.last_300s.dead_lettered)})
              </dd>
            </dl>
            <p className="text-xs text-muted-foreground">Rates: last minute (last 5 minutes).</p>
            <div className="grid gap-3 sm:grid-cols-2">
              <div>
                <h3 className="mb-1 text-sm font-medium">Queues</h3>
                {s.queues ? (
                  Object.keys(s.queues).length > 0 ? (
                    <ul className="text-sm">
                      {Object.entries(s.queues).map(([name, depth]) => (
                        <li key={name} className="flex justify-between gap-2">
                          <span className="font-mono text-xs">{name}</span>
                          <span className="tabular-nums">{depth}</span>
                        </li>
                      ))}
                    </ul>
                  ) : (
                    <p className="text-sm text-muted-foreground">No queues reported.</p>
                  )
                ) : (
                  <p className="text-sm text-muted-foreground">Unknown: {s.unavailable.queues ?? "not reported"}</p>
                )}
              </div>
              <div>
                <h3 className="mb-1 text-sm font-medium">Workers</h3>
                {s.workers ? (
                  Object.keys(s.workers).length > 0 ? (
                    <ul className="text-sm">
                      {Object.entries(s.workers).map(([name, queues]) => (
                        <li key={name}>
                          <span className="font-mono text-xs">{name}</span>
                          <span className="text-muted-foreground"> — {queues.join(", ") || "no queues"}</span>
                        </li>
                      ))}
                    </ul>
                  ) : (
                    <p className="text-sm text-muted-foreground">No worker answered.</p>
                  )
                ) : (
                  <p className="text-sm text-muted-foreground">Unknown: {s.unavailable.workers ?? "not reported"}</p>
                )}
              </div>
            </div>
          </>
        ) : (
          !status.error && <Loading what="status" />
        )}
        <QueryError error={status.error} stale={status.data !== undefined} />
      </CardContent>
    </Card>
  );
}

function MessageRateCard() {
  const hub = useEventsHub();
  const { state } = useSocketStatus();
  const now = useNow(1000);
  const times = hub ? hub.accepted.snapshot(now) : [];
  const buckets = bucketize(times, now, hub?.watchingSince ?? now);
  return (
    <Card aria-labelledby="card-rate">
      <CardHeader>
        <CardTitle id="card-rate">Messages accepted</CardTitle>
        <CardDescription>
          Per 5 seconds over the last 5 minutes, counted live from the events socket since this page opened.
        </CardDescription>
      </CardHeader>
      <CardContent>
        <Sparkline counts={buckets.counts} bucketSeconds={BUCKET_MS / 1000} label="Messages accepted" />
        {state === "reconnecting" && (
          <p role="status" className="mt-2 text-sm text-warning">
            Socket reconnecting… messages accepted meanwhile are not counted.
          </p>
        )}
        {state === "forbidden" && (
          <p role="status" className="mt-2 text-sm text-muted-foreground">
            This key may not observe events, so the rate cannot be shown.
          </p>
        )}
      </CardContent>
    </Card>
  );
}

function DeadLettersCard() {
  const { api } = useAuth();
  const q = useApi(
    (signal) => api.get("/api/v1/dead-letters", { query: { limit: DEAD_LETTER_PAGE }, signal }),
    [api],
    60_000,
  );
  const refetch = useDebounced(q.reload, 2000);
  useBusEvents(["message.dead_lettered", "dead_letter.replayed"], refetch);
  const page = q.data;
  const reasons = page ? countByReason(page.dead_letters) : [];
  const partial = page !== undefined && page.total > page.dead_letters.length;
  return (
    <Card aria-labelledby="card-dead">
      <CardHeader>
        <CardTitle id="card-dead">Dead letters by reason</CardTitle>
        <CardDescription>
          {page
            ? `${page.total} dead letter${page.total === 1 ? "" : "s"} in all.`
            : "Messages the bus could not deliver."}
        </CardDescription>
      </CardHeader>
      <CardContent>
        {page ? (
          reasons.length > 0 ? (
            <table className="w-full text-sm">
              <caption className="sr-only">Dead letters counted by reason</caption>
              <thead>
                <tr className="text-left text-muted-foreground">
                  <th scope="col" className="py-1 font-medium">
                    Reason
                  </th>
                  <th scope="col" className="py-1 text-right font-medium">
                    Count
                  </th>
                </tr>
              </thead>
              <tbody>
                {reasons.map(({ reason, count }) => (
                  <tr key={reason} className="border-t border-border">
                    <td className="py-1 font-mono text-xs">{reason}</td>
                    <td className="py-1 text-right tabular-nums">{count}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p className="text-sm text-muted-foreground">No dead letters.</p>
          )
        ) : (
          !q.error && <Loading what="dead letters" />
        )}
        {partial && page && (
          <p role="note" className="mt-2 text-sm text-warning">
            Counted from the first {page.dead_letters.length} of {page.total} dead letters only; the reasons of the
            other {page.total - page.dead_letters.length} are not included.
          </p>
        )}
        <QueryError error={q.error} stale={q.data !== undefined} />
      </CardContent>
    </Card>
  );
}
