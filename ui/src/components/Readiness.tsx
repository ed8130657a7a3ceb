import type { GetResult } from "@/api/client";
import { ApiError } from "@/api/errors";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Badge } from "@/components/ui/badge";
import type { ApiState } from "@/lib/useApi";

/** `/readyz` as badges: ready or not, and each dependency's state (a 503 not_ready names them in its details). */
export function Readiness({ ready }: { ready: ApiState<GetResult<"/readyz">> }) {
  const notReady = ready.error instanceof ApiError && ready.error.code === "not_ready" ? ready.error : null;
  const checks: Record<string, unknown> | null = ready.data ? ready.data.checks : notReady ? notReady.details : null;
  return (
    <>
      <div className="flex flex-wrap items-center gap-2" aria-label="Readiness" role="group">
        {ready.data ? (
          <Badge variant="success">Ready</Badge>
        ) : notReady ? (
          <Badge variant="destructive">Not ready</Badge>
        ) : ready.error ? null : (
          <Loading what="readiness" />
        )}
        {checks &&
          Object.entries(checks).map(([name, value]) => (
            <Badge key={name} variant={value === "ok" ? "outline" : "destructive"}>
              {name}: {String(value)}
            </Badge>
          ))}
      </div>
      {!notReady && <QueryError error={ready.error} stale={false} />}
    </>
  );
}
