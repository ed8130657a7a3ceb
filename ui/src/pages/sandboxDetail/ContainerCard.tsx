import { useRef, useState } from "react";
import { Link } from "react-router";
import type { Schemas } from "@/api/client";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { Alert } from "@/components/ui/alert";
import { Badge, type BadgeProps } from "@/components/ui/badge";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { formatTime } from "@/lib/format";
import { formatLimits, lifecycleActions, readSpec, TRANSITIONAL_STATES } from "@/lib/sandboxes";
import { cn } from "@/lib/utils";
import { EngineView } from "./EngineView";
import { DeleteSandboxDialog, LifecycleButtons, type Command } from "./Lifecycle";

type Sandbox = Schemas["Sandbox"];
type Status = Schemas["SandboxStatus"];

export const CONTAINER_STATE_VARIANT: Record<string, BadgeProps["variant"]> = {
  running: "success",
  error: "destructive",
  stopped: "outline",
  created: "outline",
  deleted: "outline",
};

/** The sandbox's container: for a managed sandbox its state, lifecycle commands and spec; else a note. */
export function ContainerCard({
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
  const [busy, setBusy] = useState<Command | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const stateRef = useRef<HTMLDivElement>(null);

  if (!sandbox.managed) return <NotManaged />;

  // GET …/status when it answered (it has the engine's view too), else the registration: both refetched together.
  const view = status ?? sandbox;
  const state = view.state ?? "unknown";
  const desired = view.desired_state ?? null;

  async function command(kind: Command) {
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
          <Badge variant={CONTAINER_STATE_VARIANT[state] ?? "warning"} className={cn(TRANSITIONAL_STATES.includes(state) && "animate-pulse")}>
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
        <LifecycleButtons
          actions={lifecycleActions({ state, desired_state: desired })}
          busy={busy}
          onCommand={(kind) => void command(kind)}
          onDelete={() => setConfirmDelete(true)}
        />
        <div aria-live="polite">
          {notice && (
            <p className="text-sm text-muted-foreground" role="status">
              {notice}
            </p>
          )}
        </div>
        <ActionError error={error} />
        <SpecList view={view} />
        <EngineView status={status} error={statusError} />
        <Link className="text-sm text-primary underline" to={logsPath}>
          Follow its logs
        </Link>
      </CardContent>
      {confirmDelete && (
        <DeleteSandboxDialog
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

function NotManaged() {
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

/** What the container was made from: image, command, limits, network, environment names (never their values). */
function SpecList({ view }: { view: Sandbox | Status }) {
  const spec = readSpec(view.spec);
  return (
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
  );
}
