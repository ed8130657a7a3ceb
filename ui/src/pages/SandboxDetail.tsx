import { FileQuestion, Inbox, Play, RefreshCw, ScrollText, Square, Trash2 } from "lucide-react";
import { useRef, useState } from "react";
import { Link, useParams } from "react-router";
import type { Schemas } from "@/api/client";
import { ApiError, describeError } from "@/api/errors";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { EmptyState } from "@/components/EmptyState";
import { JsonBlock } from "@/components/JsonBlock";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Badge, type BadgeProps } from "@/components/ui/badge";
import { Button, buttonVariants } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import {
  AlertDialog,
  AlertDialogCancel,
  AlertDialogContent,
  AlertDialogDescription,
  AlertDialogTitle,
  DialogFooter,
} from "@/components/ui/dialog";
import { useBusEvents } from "@/lib/events";
import { formatAgo, formatTime } from "@/lib/format";
import {
  concernsSandbox,
  formatLimits,
  lifecycleActions,
  readSpec,
  SANDBOX_PAGE_EVENTS,
  TRANSITIONAL_STATES,
} from "@/lib/sandboxes";
import { useApi, useDebounced, useNow } from "@/lib/useApi";
import { cn } from "@/lib/utils";

type Sandbox = Schemas["Sandbox"];
type Status = Schemas["SandboxStatus"];

const STATUS_VARIANT: Record<string, BadgeProps["variant"]> = { online: "success", offline: "warning", unregistered: "outline" };

export const CONTAINER_STATE_VARIANT: Record<string, BadgeProps["variant"]> = {
  running: "success",
  error: "destructive",
  stopped: "outline",
  created: "outline",
  deleted: "outline",
};

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
        <EmptyState icon={deleteAsked ? Trash2 : FileQuestion} title={deleteAsked ? "Sandbox deleted" : "No such sandbox"}>
          <p>
            {deleteAsked
              ? `Sandbox ${sandboxId} was deleted: its container is gone and it is unregistered.`
              : "The bus has no registered sandbox with this id (it may have been unregistered or deleted)."}{" "}
            <Link className="text-primary underline" to="/sandboxes">
              See every sandbox
            </Link>
            .
          </p>
        </EmptyState>
      ) : (
        <>
          <QueryError error={q.error} stale={sandbox !== undefined} />
          {sandbox === undefined ? (
            !q.error && <Loading what="the sandbox" />
          ) : (
            <div className="grid items-start gap-4 lg:grid-cols-2">
              <Registration sandbox={sandbox} now={now} mailboxPath={mailboxPath} />
              <Container
                sandbox={sandbox}
                status={status.data ?? null}
                statusError={status.error}
                logsPath={logsPath}
                onChanged={reloadAll}
                onDeleteAsked={() => setDeleteAsked(true)}
              />
              <AgentsCard agents={sandbox.agents} />
              <Subscriptions data={subscriptions.data} error={subscriptions.error} />
            </div>
          )}
        </>
      )}
    </>
  );
}

function Registration({ sandbox: s, now, mailboxPath }: { sandbox: Sandbox; now: number; mailboxPath: string }) {
  return (
    <Card aria-labelledby="sb-registration">
      <CardHeader>
        <CardTitle id="sb-registration">Registration</CardTitle>
      </CardHeader>
      <CardContent className="flex flex-col gap-3">
        <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-1.5 text-sm">
          <dt className="font-medium">Status</dt>
          <dd>
            <Badge variant={STATUS_VARIANT[s.status] ?? "default"} data-testid="sandbox-status">
              {s.status}
            </Badge>
          </dd>
          <dt className="font-medium">Workspace</dt>
          <dd>
            <Link className="text-primary underline" to={`/sandboxes?workspace=${encodeURIComponent(s.workspace)}`}>
              {s.workspace}
            </Link>
          </dd>
          <dt className="font-medium">Last heartbeat</dt>
          <dd>
            {s.last_heartbeat ? (
              <time dateTime={s.last_heartbeat} title={formatTime(s.last_heartbeat)}>
                {formatAgo(s.last_heartbeat, now)}
              </time>
            ) : (
              <span className="text-muted-foreground">never</span>
            )}
          </dd>
          <dt className="font-medium">Registered</dt>
          <dd>{s.registered_at ? formatTime(s.registered_at) : <span className="text-muted-foreground">not registered</span>}</dd>
          <dt className="font-medium">Mailbox</dt>
          <dd>
            <Link className="text-primary underline" to={mailboxPath}>
              {s.head_seq} entr{s.head_seq === 1 ? "y" : "ies"}
            </Link>
            <span className="text-muted-foreground">
              {s.head_seq === 0 ? "" : s.settled_seq >= s.head_seq ? ", all settled" : `, settled through seq ${s.settled_seq}`}
            </span>
          </dd>
        </dl>
        {Object.keys(s.metadata).length > 0 && (
          <details>
            <summary className="cursor-pointer text-sm font-medium">Metadata</summary>
            <JsonBlock value={s.metadata} label="Sandbox metadata" className="mt-2" />
          </details>
        )}
      </CardContent>
    </Card>
  );
}

function Container({
  sandbox,
  status,
  statusError,
  logsPath,
  onChanged,
  onDeleteAsked,
}: {
  sandbox: Sandbox;
  status: Status | null;
  statusError: unknown;
  logsPath: string;
  onChanged: () => void;
  onDeleteAsked: () => void;
}) {
  const { api } = useAuth();
  const [busy, setBusy] = useState<"start" | "stop" | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const stateRef = useRef<HTMLDivElement>(null);

  if (!sandbox.managed) {
    return (
      <Card aria-labelledby="sb-container">
        <CardHeader>
          <CardTitle id="sb-container">Container</CardTitle>
        </CardHeader>
        <CardContent>
          <p className="text-sm text-muted-foreground" data-testid="not-managed">
            This sandbox registered itself: the bus runs no container for it, so it has no lifecycle actions and no
            logs here. Managed sandboxes are made with <strong>Create sandbox</strong> on the Sandboxes page.
          </p>
        </CardContent>
      </Card>
    );
  }

  // GET …/status when it answered (it has the engine's view too), else the registration: both refetched together.
  const view = status ?? sandbox;
  const state = view.state ?? "unknown";
  const desired = view.desired_state ?? null;
  const actions = lifecycleActions({ state, desired_state: desired });
  const spec = readSpec(view.spec);
  const moving = TRANSITIONAL_STATES.includes(state);

  async function command(kind: "start" | "stop") {
    setBusy(kind);
    setError(null);
    setNotice(null);
    try {
      const path = { sandbox_id: sandbox.sandbox_id };
      if (kind === "start") await api.send("post", "/api/v1/sandboxes/{sandbox_id}/start", { path });
      else await api.send("post", "/api/v1/sandboxes/{sandbox_id}/stop", { path });
      setNotice(kind === "start" ? "Asked the sandbox to run; its state follows here." : "Asked the sandbox to stop; its state follows here.");
      onChanged();
      // The pressed button may have gone (no Start while it runs): keep the focus on what changes.
      stateRef.current?.focus();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  }

  return (
    <Card aria-labelledby="sb-container">
      <CardHeader>
        <CardTitle id="sb-container">Container</CardTitle>
        <CardDescription>Managed by the bus: it runs this sandbox's container and follows the state you ask for.</CardDescription>
      </CardHeader>
      <CardContent className="flex flex-col gap-3">
        <div ref={stateRef} tabIndex={-1} role="status" aria-live="polite" className="flex flex-wrap items-center gap-2 rounded-md focus:outline-2 focus:outline-ring">
          <span className="text-sm font-medium">State</span>
          <Badge variant={CONTAINER_STATE_VARIANT[state] ?? "warning"} className={cn(moving && "animate-pulse")}>
            <span data-testid="sandbox-state" data-state={state}>
              {state}
            </span>
          </Badge>
          {desired && desired !== state && (
            <span className="text-sm text-muted-foreground" data-testid="sandbox-desired-state">
              asked: {desired}
            </span>
          )}
        </div>
        {view.state_reason && (
          <Alert variant="destructive" role="status">
            {view.state_reason}
          </Alert>
        )}
        <div className="flex flex-wrap gap-2" role="group" aria-label="Lifecycle">
          {actions.start && (
            <Button size="sm" onClick={() => void command("start")} disabled={busy !== null} aria-busy={busy === "start"}>
              <Play aria-hidden="true" />
              Start
            </Button>
          )}
          {actions.stop && (
            <Button size="sm" variant="outline" onClick={() => void command("stop")} disabled={busy !== null} aria-busy={busy === "stop"}>
              <Square aria-hidden="true" />
              Stop
            </Button>
          )}
          {actions.delete && (
            <Button size="sm" variant="destructive" onClick={() => setConfirmDelete(true)} disabled={busy !== null}>
              <Trash2 aria-hidden="true" />
              Delete
            </Button>
          )}
          {!actions.start && !actions.stop && !actions.delete && (
            <p className="text-sm text-muted-foreground">Being deleted: it takes no other command.</p>
          )}
        </div>
        <div aria-live="polite">
          {notice && (
            <p className="text-sm text-muted-foreground" role="status">
              {notice}
            </p>
          )}
        </div>
        <ActionError error={error} />
        <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-1.5 text-sm">
          <dt className="font-medium">State changed</dt>
          <dd>{view.state_changed_at ? formatTime(view.state_changed_at) : "—"}</dd>
          <dt className="font-medium">Image</dt>
          <dd className="font-mono text-xs break-all">{spec.image ?? "—"}</dd>
          {spec.command && (
            <>
              <dt className="font-medium">Command</dt>
              <dd className="font-mono text-xs break-all">{spec.command.join(" ")}</dd>
            </>
          )}
          <dt className="font-medium">Limits</dt>
          <dd data-testid="sandbox-limits">{formatLimits(spec.limits)}</dd>
          <dt className="font-medium">Network</dt>
          <dd>{spec.networkMode ?? "—"}</dd>
          {spec.envNames.length > 0 && (
            <>
              <dt className="font-medium">Environment</dt>
              <dd>
                <span className="font-mono text-xs">{spec.envNames.join(", ")}</span>{" "}
                <span className="text-muted-foreground">(values not shown)</span>
              </dd>
            </>
          )}
          <dt className="font-medium">Container id</dt>
          <dd className="font-mono text-xs break-all">{view.container_id ? view.container_id.slice(0, 12) : "none yet"}</dd>
        </dl>
        <EngineView status={status} error={statusError} />
        <Link className="text-sm text-primary underline" to={logsPath}>
          Follow its logs
        </Link>
      </CardContent>
      {confirmDelete && (
        <DeleteDialog
          sandboxId={sandbox.sandbox_id}
          onClose={() => setConfirmDelete(false)}
          onDeleted={() => {
            setConfirmDelete(false);
            setNotice("Deleting: the bus stops and removes its container, then unregisters it.");
            onDeleteAsked();
            onChanged();
          }}
        />
      )}
    </Card>
  );
}

/** The container as the engine reports it right now (GET …/status). */
function EngineView({ status, error }: { status: Status | null; error: unknown }) {
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

function DeleteDialog({
  sandboxId,
  onClose,
  onDeleted,
}: {
  sandboxId: string;
  onClose: () => void;
  onDeleted: () => void;
}) {
  const { api } = useAuth();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function remove() {
    setBusy(true);
    setError(null);
    try {
      // A managed sandbox answers 202: its container is stopped and removed, then it is unregistered.
      await api.send("delete", "/api/v1/sandboxes/{sandbox_id}", { path: { sandbox_id: sandboxId } });
      onDeleted();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  return (
    <AlertDialog open onOpenChange={(o) => !o && onClose()}>
      <AlertDialogContent data-testid="sandbox-delete-dialog">
        <AlertDialogTitle>Delete sandbox {sandboxId}?</AlertDialogTitle>
        <AlertDialogDescription>
          The bus stops its container, removes it and then unregisters the sandbox: its tokens stop working. This
          cannot be undone.
        </AlertDialogDescription>
        <ActionError error={error} />
        <DialogFooter>
          <AlertDialogCancel>Cancel</AlertDialogCancel>
          <Button variant="destructive" onClick={() => void remove()} disabled={busy} aria-busy={busy}>
            Delete sandbox
          </Button>
        </DialogFooter>
      </AlertDialogContent>
    </AlertDialog>
  );
}

function AgentsCard({ agents }: { agents: Sandbox["agents"] }) {
  return (
    <Card aria-labelledby="sb-agents">
      <CardHeader>
        <CardTitle id="sb-agents">Agents and skills ({agents.length})</CardTitle>
      </CardHeader>
      <CardContent>
        {agents.length === 0 ? (
          <p className="text-sm text-muted-foreground">No agent registered in this sandbox.</p>
        ) : (
          <ul className="flex flex-col gap-3 text-sm">
            {agents.map((a) => (
              <li key={a.name} className="flex flex-col gap-1">
                <span className="font-medium">{a.name}</span>
                {a.capabilities.length > 0 && (
                  <span className="flex flex-wrap items-center gap-1">
                    <span className="text-xs text-muted-foreground">capabilities:</span>
                    {a.capabilities.map((c) => (
                      <Badge key={c}>{c}</Badge>
                    ))}
                  </span>
                )}
                {(a.skills ?? []).length > 0 && (
                  <ul className="flex flex-col gap-1 pl-3">
                    {(a.skills ?? []).map((sk) => (
                      <li key={sk.id}>
                        <Badge variant="outline">{sk.name || sk.id}</Badge>{" "}
                        <span className="font-mono text-xs text-muted-foreground">{sk.id}</span>
                        {sk.description && <span className="block text-muted-foreground">{sk.description}</span>}
                      </li>
                    ))}
                  </ul>
                )}
              </li>
            ))}
          </ul>
        )}
      </CardContent>
    </Card>
  );
}

function Subscriptions({ data, error }: { data: Schemas["SubscriptionList"] | undefined; error: unknown }) {
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
