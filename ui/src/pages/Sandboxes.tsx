import { Boxes, Plus, RefreshCw } from "lucide-react";
import { useEffect, useId, useMemo, useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import type { Schemas } from "@/api/client";
import { ApiError } from "@/api/errors";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { EmptyState } from "@/components/EmptyState";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Badge, type BadgeProps } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Dialog, DialogContent, DialogDescription, DialogFooter, DialogTitle } from "@/components/ui/dialog";
import { Input, Label, Select } from "@/components/ui/input";
import { useBusEvents } from "@/lib/events";
import {
  applySandboxFilters,
  matchesFilters,
  parseSandboxFilters,
  SANDBOX_STATUSES,
  type SandboxFilters,
} from "@/lib/filters";
import { formatAgo, formatTime } from "@/lib/format";
import { EMPTY_CREATE_FORM, formToCreateSandbox, NETWORK_MODES, type CreateSandboxForm } from "@/lib/sandboxes";
import { useApi, useDebounced, useNow } from "@/lib/useApi";
import { flattenDetails } from "@/lib/workspaces";

type Sandbox = Schemas["Sandbox"];

/** Events after which the list is fetched again. */
const SANDBOX_EVENTS = [
  "sandbox.registered",
  "sandbox.unregistered",
  "sandbox.online",
  "sandbox.offline",
  "sandbox.connected",
  "sandbox.disconnected",
  "sandbox.state_changed",
  "sandbox.waking",
] as const;

const STATUS_VARIANT: Record<string, BadgeProps["variant"]> = {
  online: "success",
  offline: "warning",
  unregistered: "outline",
};

export function Sandboxes() {
  const { api } = useAuth();
  const [searchParams, setSearchParams] = useSearchParams();
  const filters = parseSandboxFilters(searchParams);
  const now = useNow(5000);
  const workspaceId = useId();
  const statusId = useId();
  const [creating, setCreating] = useState(false);
  // Whether this bus runs containers at all (MANAGED_SANDBOXES), and its edition's limit.
  const edition = useApi((signal) => api.get("/api/v1/edition", { signal }), [api]);
  const managedOff = edition.data?.managed_sandboxes.enabled === false;

  // The whole list (the API has no paging for it), filtered here so the workspace choices stay complete.
  const q = useApi(
    (signal) => api.get("/api/v1/sandboxes", { query: { include_unregistered: true }, signal }),
    [api],
    30_000,
  );
  const refetch = useDebounced(q.reload, 500);
  useBusEvents(SANDBOX_EVENTS, refetch);

  const all = q.data?.sandboxes;
  const workspaces = useMemo(() => {
    const set = new Set((all ?? []).map((s) => s.workspace));
    if (filters.workspace) set.add(filters.workspace);
    return [...set].sort((a, b) => a.localeCompare(b));
  }, [all, filters.workspace]);
  const shown = useMemo(
    () =>
      (all ?? [])
        .filter((s) => matchesFilters(s, filters))
        .sort((a, b) => a.workspace.localeCompare(b.workspace) || a.sandbox_id.localeCompare(b.sandbox_id)),
    [all, filters.workspace, filters.status],
  );

  function setFilters(next: SandboxFilters) {
    setSearchParams(applySandboxFilters(next, searchParams), { replace: true });
  }

  const filtered = filters.workspace !== null || filters.status !== null;

  return (
    <>
      <PageHeader
        title="Sandboxes"
        description="Every sandbox the bus knows, updated live as they register, connect and change state. Open one to start, stop or delete it."
        actions={
          <>
            <Button variant="outline" size="sm" onClick={q.reload} aria-busy={q.loading}>
              <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
              Refresh
            </Button>
            <Button
              size="sm"
              onClick={() => setCreating(true)}
              disabled={managedOff}
              aria-describedby={managedOff ? `${workspaceId}-managed-off` : undefined}
            >
              <Plus aria-hidden="true" />
              Create sandbox
            </Button>
          </>
        }
      />
      {managedOff && (
        <p id={`${workspaceId}-managed-off`} className="mb-4 text-sm text-muted-foreground">
          This bus runs no containers (managed sandboxes are off: start it with <code>MANAGED_SANDBOXES=true</code>), so
          sandboxes cannot be created here; agents register their own.
        </p>
      )}
      {creating && (
        <CreateSandboxDialog
          workspace={filters.workspace}
          edition={edition.data}
          onClose={() => setCreating(false)}
        />
      )}
      <form
        role="search"
        aria-label="Filter sandboxes"
        className="mb-4 flex flex-wrap items-end gap-4"
        onSubmit={(e) => e.preventDefault()}
      >
        <div className="flex w-56 flex-col gap-1.5">
          <Label htmlFor={workspaceId}>Workspace</Label>
          <Select
            id={workspaceId}
            value={filters.workspace ?? ""}
            onChange={(e) => setFilters({ ...filters, workspace: e.target.value || null })}
          >
            <option value="">All workspaces</option>
            {workspaces.map((w) => (
              <option key={w} value={w}>
                {w}
              </option>
            ))}
          </Select>
        </div>
        <div className="flex w-44 flex-col gap-1.5">
          <Label htmlFor={statusId}>Status</Label>
          <Select
            id={statusId}
            value={filters.status ?? ""}
            onChange={(e) =>
              setFilters({ ...filters, status: parseSandboxFilters(`status=${e.target.value}`).status })
            }
          >
            <option value="">Any status</option>
            {SANDBOX_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </Select>
        </div>
        {filtered && (
          <Button variant="ghost" size="sm" onClick={() => setFilters({ workspace: null, status: null })}>
            Clear filters
          </Button>
        )}
      </form>
      {filters.invalid.length > 0 && (
        <Alert variant="warning" className="mb-4" role="status">
          The address had an invalid {filters.invalid.join(" and ")} filter; it is ignored.
        </Alert>
      )}

      <QueryError error={q.error} stale={all !== undefined} />

      {all === undefined ? (
        !q.error && <Loading what="sandboxes" />
      ) : shown.length === 0 ? (
        <EmptyState icon={Boxes} title={filtered ? "No sandbox matches these filters" : "No sandboxes yet"}>
          {filtered ? (
            <p>
              {all.length} sandbox{all.length === 1 ? "" : "es"} in all. Change or clear the filters to see them.
            </p>
          ) : (
            <p>
              A sandbox appears here when an agent registers it (<code>POST /api/v1/sandboxes/register</code>, which
              the agent SDK does on start), or when you create a managed one with <strong>Create sandbox</strong>. This
              list updates by itself.
            </p>
          )}
        </EmptyState>
      ) : (
        <>
          <p className="mb-2 text-sm text-muted-foreground" aria-live="polite">
            Showing {shown.length} of {all.length} sandbox{all.length === 1 ? "" : "es"}.
          </p>
          {/* Focusable so keyboard users can scroll it sideways in a narrow window. */}
          <div tabIndex={0} role="region" aria-label="Sandboxes table" className="overflow-x-auto rounded-lg border border-border">
            <table className="w-full min-w-[56rem] text-sm">
              <caption className="sr-only">Sandboxes{filtered ? " (filtered)" : ""}</caption>
              <thead className="bg-muted text-left">
                <tr>
                  {["Sandbox", "Workspace", "Status", "Last heartbeat", "Agents and skills", "Container"].map((h) => (
                    <th key={h} scope="col" className="px-3 py-2 font-medium">
                      {h}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {shown.map((s) => (
                  <SandboxRow key={s.sandbox_id} sandbox={s} now={now} />
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </>
  );
}

function SandboxRow({ sandbox: s, now }: { sandbox: Sandbox; now: number }) {
  return (
    <tr className="border-t border-border align-top">
      <th scope="row" className="px-3 py-2 text-left font-mono text-xs font-medium">
        <Link className="text-primary underline" to={`/sandboxes/${encodeURIComponent(s.sandbox_id)}`}>
          {s.sandbox_id}
        </Link>
      </th>
      <td className="px-3 py-2">{s.workspace}</td>
      <td className="px-3 py-2">
        <Badge variant={STATUS_VARIANT[s.status] ?? "default"}>{s.status}</Badge>
      </td>
      <td className="px-3 py-2 whitespace-nowrap">
        {s.last_heartbeat ? (
          <time dateTime={s.last_heartbeat} title={formatTime(s.last_heartbeat)}>
            {formatAgo(s.last_heartbeat, now)}
          </time>
        ) : (
          <span className="text-muted-foreground">never</span>
        )}
      </td>
      <td className="px-3 py-2">
        <Agents agents={s.agents} />
      </td>
      <td className="px-3 py-2">
        <Container sandbox={s} />
      </td>
    </tr>
  );
}

function Agents({ agents }: { agents: Sandbox["agents"] }) {
  if (agents.length === 0) return <span className="text-muted-foreground">none</span>;
  return (
    <ul className="flex flex-col gap-1">
      {agents.map((a) => (
        <li key={a.name} className="flex flex-wrap items-center gap-1">
          <span className="font-medium">{a.name}</span>
          {(a.skills ?? []).map((sk) => (
            <Badge key={sk.id} variant="outline" title={sk.description || sk.name || sk.id}>
              {sk.name || sk.id}
            </Badge>
          ))}
          {a.capabilities.map((c) => (
            <Badge key={`cap-${c}`} title="capability">
              {c}
            </Badge>
          ))}
        </li>
      ))}
    </ul>
  );
}

const STATE_VARIANT: Record<string, BadgeProps["variant"]> = {
  running: "success",
  error: "destructive",
  stopped: "outline",
  deleted: "outline",
};

function Container({ sandbox: s }: { sandbox: Sandbox }) {
  if (!s.managed) return <span className="text-muted-foreground">not managed</span>;
  const state = s.state ?? "unknown";
  return (
    <div className="flex flex-col gap-1">
      <span className="flex flex-wrap items-center gap-1">
        <Badge variant={STATE_VARIANT[state] ?? "warning"}>{state}</Badge>
        {s.desired_state && s.desired_state !== state && (
          <span className="text-xs text-muted-foreground">→ wanted {s.desired_state}</span>
        )}
      </span>
      {s.state_reason && <span className="text-xs text-destructive">{s.state_reason}</span>}
    </div>
  );
}

const NUMBER_FIELDS: { key: "memory_mb" | "cpus" | "pids"; label: string; hint: string }[] = [
  { key: "memory_mb", label: "Memory limit (MiB)", hint: "8 to 1048576" },
  { key: "cpus", label: "CPU limit", hint: "e.g. 0.5" },
  { key: "pids", label: "Process limit", hint: "8 or more" },
];

/** Create a managed sandbox (POST /api/v1/sandboxes), then open its page to watch it start. */
function CreateSandboxDialog({
  workspace,
  edition,
  onClose,
}: {
  workspace: string | null;
  edition: Schemas["Edition"] | undefined;
  onClose: () => void;
}) {
  const { api } = useAuth();
  const navigate = useNavigate();
  const base = useId();
  const workspaces = useApi((signal) => api.get("/api/v1/workspaces", { signal }), [api]);
  const [form, setForm] = useState<CreateSandboxForm>({ ...EMPTY_CREATE_FORM, workspace: workspace ?? EMPTY_CREATE_FORM.workspace });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const ids = workspaces.data?.workspaces.map((w) => w.id) ?? [];
  const choices = [...new Set([...ids, ...(form.workspace ? [form.workspace] : [])])].sort((a, b) => a.localeCompare(b));
  // Once the workspaces are known, propose one that exists ("default" if it does) unless the page's filter named one.
  const listed = workspaces.data !== undefined;
  useEffect(() => {
    if (!listed || workspace !== null || ids.length === 0 || ids.includes(form.workspace)) return;
    setForm((f) => ({ ...f, workspace: ids.includes("default") ? "default" : (ids[0] as string) }));
  }, [listed]);
  const limit = edition?.limits.managed_sandboxes ?? null;
  const inUse = edition?.managed_sandboxes.in_use ?? null;

  async function submit(e: FormEvent) {
    e.preventDefault();
    const { body, errors: found } = formToCreateSandbox(form);
    setErrors(found);
    setError(null);
    if (Object.keys(found).length > 0) return;
    setBusy(true);
    try {
      const created = await api.send("post", "/api/v1/sandboxes", { body: body as Schemas["CreateSandbox"] });
      onClose();
      navigate(`/sandboxes/${encodeURIComponent(created.sandbox_id)}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const details = error instanceof ApiError && error.code === "validation_error" ? flattenDetails(error.details) : [];
  const field = (key: keyof CreateSandboxForm) => ({
    id: `${base}-${key}`,
    "aria-invalid": errors[key] ? true : undefined,
    "aria-describedby": [`${base}-${key}-hint`, errors[key] ? `${base}-${key}-error` : null].filter(Boolean).join(" "),
  });
  const problem = (key: keyof CreateSandboxForm, label: string) =>
    errors[key] && (
      <span id={`${base}-${key}-error`} className="text-xs text-destructive">
        {label}: {errors[key]}
      </span>
    );

  return (
    <Dialog open onOpenChange={(o) => !o && onClose()}>
      <DialogContent data-testid="create-sandbox-dialog">
        <DialogTitle>Create a managed sandbox</DialogTitle>
        <DialogDescription>
          The bus creates and starts its container; empty fields take the workspace's (or the bus's) defaults.
          {limit !== null && inUse !== null && ` This edition runs at most ${limit} managed sandboxes; ${inUse} exist.`}
        </DialogDescription>
        <form className="flex flex-col gap-3" onSubmit={(e) => void submit(e)} noValidate>
          <div className="flex flex-col gap-1.5">
            <Label htmlFor={`${base}-sandbox_id`}>Sandbox id</Label>
            <Input {...field("sandbox_id")} value={form.sandbox_id} onChange={(e) => setForm({ ...form, sandbox_id: e.target.value })} />
            <span id={`${base}-sandbox_id-hint`} className="text-xs text-muted-foreground">
              optional: the bus makes one up (sbx-…)
            </span>
            {problem("sandbox_id", "Sandbox id")}
          </div>
          <div className="flex flex-col gap-1.5">
            <Label htmlFor={`${base}-workspace`}>Workspace</Label>
            <Select {...field("workspace")} value={form.workspace} onChange={(e) => setForm({ ...form, workspace: e.target.value })}>
              {choices.map((w) => (
                <option key={w} value={w}>
                  {w}
                </option>
              ))}
            </Select>
            <span id={`${base}-workspace-hint`} className="text-xs text-muted-foreground">
              {workspaces.error
                ? "The workspaces could not be listed."
                : workspaces.data && ids.length === 0
                  ? "No workspace exists yet: create one on the Workspaces page first."
                  : "its defaults (image, limits) apply"}
            </span>
            {problem("workspace", "Workspace")}
          </div>
          <div className="flex flex-col gap-1.5">
            <Label htmlFor={`${base}-image`}>Image</Label>
            <Input {...field("image")} value={form.image} onChange={(e) => setForm({ ...form, image: e.target.value })} />
            <span id={`${base}-image-hint`} className="text-xs text-muted-foreground">
              optional, e.g. aintandem/collab-agent:1
            </span>
            {problem("image", "Image")}
          </div>
          <div className="flex flex-col gap-1.5">
            <Label htmlFor={`${base}-command`}>Command</Label>
            <textarea
              {...field("command")}
              rows={2}
              value={form.command}
              onChange={(e) => setForm({ ...form, command: e.target.value })}
              className="rounded-md border border-input bg-background px-3 py-1 font-mono text-sm shadow-sm focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-ring aria-[invalid=true]:border-destructive"
            />
            <span id={`${base}-command-hint`} className="text-xs text-muted-foreground">
              optional, one argument per line (the image's own command otherwise)
            </span>
            {problem("command", "Command")}
          </div>
          <div className="flex flex-col gap-1.5">
            <Label htmlFor={`${base}-env`}>Environment</Label>
            <textarea
              {...field("env")}
              rows={2}
              value={form.env}
              onChange={(e) => setForm({ ...form, env: e.target.value })}
              className="rounded-md border border-input bg-background px-3 py-1 font-mono text-sm shadow-sm focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-ring aria-[invalid=true]:border-destructive"
            />
            <span id={`${base}-env-hint`} className="text-xs text-muted-foreground">
              optional, NAME=value per line (SANDBOX_ID, WORKSPACE, COLLABORATION_BUS_URL and BUS_TOKEN are set by the bus)
            </span>
            {problem("env", "Environment")}
          </div>
          <fieldset className="grid gap-3 sm:grid-cols-3">
            <legend className="mb-1 text-sm font-medium">Limits (optional)</legend>
            {NUMBER_FIELDS.map((f) => (
              <div key={f.key} className="flex flex-col gap-1.5">
                <Label htmlFor={`${base}-${f.key}`}>{f.label}</Label>
                <Input {...field(f.key)} type="number" step="any" value={form[f.key]} onChange={(e) => setForm({ ...form, [f.key]: e.target.value })} />
                <span id={`${base}-${f.key}-hint`} className="text-xs text-muted-foreground">
                  {f.hint}
                </span>
                {problem(f.key, f.label)}
              </div>
            ))}
          </fieldset>
          <div className="flex flex-col gap-1.5">
            <Label htmlFor={`${base}-network_mode`}>Network mode</Label>
            <Select {...field("network_mode")} value={form.network_mode} onChange={(e) => setForm({ ...form, network_mode: e.target.value })}>
              <option value="">the bus's default</option>
              {NETWORK_MODES.map((m) => (
                <option key={m} value={m}>
                  {m}
                </option>
              ))}
            </Select>
            <span id={`${base}-network_mode-hint`} className="sr-only">
              how the container reaches the bus
            </span>
            {problem("network_mode", "Network mode")}
          </div>
          <div className="flex items-center gap-2 text-sm">
            <input
              id={`${base}-start`}
              type="checkbox"
              className="size-4"
              checked={form.start}
              onChange={(e) => setForm({ ...form, start: e.target.checked })}
            />
            <Label htmlFor={`${base}-start`}>Start it at once</Label>
          </div>
          <ActionError error={error} />
          {details.length > 0 && (
            <ul className="list-disc pl-5 text-sm text-destructive">
              {details.map((d) => (
                <li key={d}>{d}</li>
              ))}
            </ul>
          )}
          <DialogFooter>
            <Button variant="outline" onClick={onClose}>
              Cancel
            </Button>
            <Button type="submit" disabled={busy} aria-busy={busy}>
              Create sandbox
            </Button>
          </DialogFooter>
        </form>
      </DialogContent>
    </Dialog>
  );
}
