import type { Schemas } from "@/api/client";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Card, CardContent, CardHeader, CardTitle } from "@/components/ui/card";
import { formatTime } from "@/lib/format";

/** The topic patterns the sandbox subscribed to. */
export function SubscriptionsCard({ data, error }: { data: Schemas["SubscriptionList"] | undefined; error: unknown }) {
  return (
    <Card aria-labelledby="sb-subscriptions">
      <CardHeader>
        <CardTitle id="sb-subscriptions">Topic subscriptions{data ? ` (${data.count})` : ""}</CardTitle>
      </CardHeader>
      <CardContent>
        <QueryError error={error} stale={data !== undefined} />
        {data === undefined ? (
          !error && <Loading what="subscriptions" />
        ) : data.subscriptions.length === 0 ? (
          <p className="text-sm text-muted-foreground">
            None: the sandbox gets no topic messages (it subscribes itself with <code>POST …/subscriptions</code>).
          </p>
        ) : (
          <ul className="flex flex-col gap-1 text-sm">
            {data.subscriptions.map((sub) => (
              <li key={sub.pattern} className="flex flex-wrap items-center gap-2">
                <span className="font-mono text-xs">{sub.pattern}</span>
                <span className="text-muted-foreground">since {formatTime(sub.created_at)}</span>
              </li>
            ))}
          </ul>
        )}
      </CardContent>
    </Card>
  );
}
