import { FileQuestion, Inbox, RefreshCw, ScrollText, Trash2 } from "lucide-react";
import { useState } from "react";
import { Link, useParams } from "react-router";
import { ApiError } from "@/api/errors";
import { useAuth } from "@/auth/auth";
import { EmptyState } from "@/components/EmptyState";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Button, buttonVariants } from "@/components/ui/button";
import { useBusEvents } from "@/lib/events";
import { concernsSandbox, SANDBOX_PAGE_EVENTS } from "@/lib/sandboxes";
import { useApi, useDebounced, useNow } from "@/lib/useApi";
import { AgentsCard } from "./sandboxDetail/AgentsCard";
import { ContainerCard } from "./sandboxDetail/ContainerCard";
import { RegistrationCard } from "./sandboxDetail/RegistrationCard";
import { SubscriptionsCard } from "./sandboxDetail/SubscriptionsCard";

export { CONTAINER_STATE_VARIANT } from "./sandboxDetail/ContainerCard";

/** `/sandboxes/:sandboxId`: one sandbox, its container and, for a managed one, start, stop and delete. */
export function SandboxDetail() {
  const { sandboxId = "" } = useParams();
  const { api } = useAuth();
  const now = useNow(5000);
  const q = useApi((signal) => api.get("/api/v1/sandboxes/{sandbox_id}", { path: { sandbox_id: sandboxId }, signal }), [api, sandboxId], 30_000);
  const managed = q.data?.managed === true;
  const status = useApi(
    (signal) =>
      managed ? api.get("/api/v1/sandboxes/{sandbox_id}/status", { path: { sandbox_id: sandboxId }, signal }) : Promise.resolve(null),
    [api, sandboxId, managed],
    managed ? 30_000 : undefined,
  );
  const subscriptions = useApi(
    (signal) => api.get("/api/v1/sandboxes/{sandbox_id}/subscriptions", { path: { sandbox_id: sandboxId }, signal }),
    [api, sandboxId],
  );
  const reloadAll = () => {
    q.reload();
    status.reload();
  };
  const refetch = useDebounced(reloadAll, 250);
  useBusEvents(SANDBOX_PAGE_EVENTS, (event) => {
    if (concernsSandbox(event, sandboxId)) refetch();
  });
  const [deleteAsked, setDeleteAsked] = useState(false);

  const sandbox = q.data;
  const missing = q.error instanceof ApiError && q.error.status === 404;
  const mailboxPath = `/sandboxes/${encodeURIComponent(sandboxId)}/mailbox`;
  const logsPath = `/sandboxes/${encodeURIComponent(sandboxId)}/logs`;

  return (
    <>
      <PageHeader
        title={`Sandbox ${sandboxId}`}
        description={
          <Link className="text-primary underline" to="/sandboxes">
            All sandboxes
          </Link>
        }
        actions={
          <>
            <Button variant="outline" size="sm" onClick={reloadAll} aria-busy={q.loading}>
              <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
              Refresh
            </Button>
            {!missing && (
              <Link className={buttonVariants({ variant: "outline", size: "sm" })} to={mailboxPath}>
                <Inbox aria-hidden="true" />
                Mailbox
              </Link>
            )}
            {managed && (
              <Link className={buttonVariants({ variant: "outline", size: "sm" })} to={logsPath}>
                <ScrollText aria-hidden="true" />
                Logs
              </Link>
            )}
          </>
        }
      />
      {missing ? (
        <NoSuchSandbox sandboxId={sandboxId} deleted={deleteAsked} />
      ) : (
        <>
          <QueryError error={q.error} stale={sandbox !== undefined} />
          {sandbox === undefined ? (
            !q.error && <Loading what="the sandbox" />
          ) : (
            <div className="grid items-start gap-4 lg:grid-cols-2">
              <RegistrationCard sandbox={sandbox} now={now} mailboxPath={mailboxPath} />
              <ContainerCard
                sandbox={sandbox}
                status={status.data ?? null}
                statusError={status.error}
                logsPath={logsPath}
                onChanged={reloadAll}
                onDeleteAsked={() => setDeleteAsked(true)}
              />
              <AgentsCard agents={sandbox.agents} />
              <SubscriptionsCard data={subscriptions.data} error={subscriptions.error} />
            </div>
          )}
        </>
      )}
    </>
  );
}

/** The bus answered 404: the sandbox was deleted from this page, or it is not (or no longer) registered. */
function NoSuchSandbox({ sandboxId, deleted }: { sandboxId: string; deleted: boolean }) {
  return (
    <EmptyState icon={deleted ? Trash2 : FileQuestion} title={deleted ? "Sandbox deleted" : "No such sandbox"}>
      <p>
        {deleted
          ? `Sandbox ${sandboxId} was deleted: its container is gone and it is unregistered.`
          : "The bus has no registered sandbox with this id (it may have been unregistered or deleted)."}{" "}
        <Link className="text-primary underline" to="/sandboxes">
          See every sandbox
        </Link>
        .
      </p>
    </EmptyState>
  );
}
