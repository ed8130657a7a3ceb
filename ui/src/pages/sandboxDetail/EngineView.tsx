import type { Schemas } from "@/api/client";
import { describeError } from "@/api/errors";
import { formatTime } from "@/lib/format";

/** The container as the engine reports it right now (GET …/status). */
export function EngineView({ status, error }: { status: Schemas["SandboxStatus"] | null; error: unknown }) {
  if (error) {
    return <p className="text-sm text-destructive">The container's details could not be read: {describeError(error)}</p>;
  }
  if (!status) return null;
  if (status.engine_error) {
    return <p className="text-sm text-destructive">The container engine cannot tell: {status.engine_error}</p>;
  }
  const c = status.container;
  if (!c) return <p className="text-sm text-muted-foreground">No container yet.</p>;
  return (
    <section aria-labelledby="sb-engine" className="rounded-md border border-border p-3">
      <h3 id="sb-engine" className="mb-1 text-sm font-semibold">
        The engine reports
      </h3>
      <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-1 text-sm">
        <dt className="font-medium">Container status</dt>
        <dd data-testid="container-status">{c.status}</dd>
        {c.exit_code !== null && (
          <>
            <dt className="font-medium">Exit code</dt>
            <dd>{c.exit_code}</dd>
          </>
        )}
        {c.oom_killed && (
          <>
            <dt className="font-medium">Out of memory</dt>
            <dd className="text-destructive">killed for using too much memory</dd>
          </>
        )}
        {c.error && (
          <>
            <dt className="font-medium">Error</dt>
            <dd className="text-destructive">{c.error}</dd>
          </>
        )}
        <dt className="font-medium">Started</dt>
        <dd>{c.started_at ? formatTime(c.started_at) : "—"}</dd>
        <dt className="font-medium">Finished</dt>
        <dd>{c.finished_at ? formatTime(c.finished_at) : "—"}</dd>
      </dl>
    </section>
  );
}
