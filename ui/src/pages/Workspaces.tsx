import { Network, Pencil, Plus, RefreshCw, Trash2 } from "lucide-react";
import { useId, useState, type FormEvent } from "react";
import { Link } from "react-router";
import type { Schemas } from "@/api/client";
import { ApiError } from "@/api/errors";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { EmptyState } from "@/components/EmptyState";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import {
  AlertDialog,
  AlertDialogCancel,
  AlertDialogContent,
  AlertDialogDescription,
  AlertDialogTitle,
  Dialog,
  DialogContent,
  DialogDescription,
  DialogFooter,
  DialogTitle,
} from "@/components/ui/dialog";
import { Input, Label } from "@/components/ui/input";
import { useBusEvents } from "@/lib/events";
import { formatAgo, formatTime } from "@/lib/format";
import { useApi, useDebounced, useNow } from "@/lib/useApi";
import { EMPTY_WORKSPACE_FORM, flattenDetails, formToWorkspace, workspaceToForm, type WorkspaceForm } from "@/lib/workspaces";

type Workspace = Schemas["Workspace"];

const EVENTS = ["sandbox.registered", "sandbox.unregistered"] as const;

export function Workspaces() {
  const { api } = useAuth();
  const now = useNow(30_000);
  const q = useApi((signal) => api.get("/api/v1/workspaces", { signal }), [api], 60_000);
  const refetch = useDebounced(q.reload, 1000);
  useBusEvents(EVENTS, refetch);
  const [editing, setEditing] = useState<Workspace | "new" | null>(null);
  const [deleting, setDeleting] = useState<Workspace | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const list = q.data?.workspaces;

  function done(text: string) {
    setNotice(text);
    q.reload();
  }

  return (
    <>
      <PageHeader
        title="Workspaces"
        description="Groups of sandboxes, with the defaults the bus uses for the managed sandboxes it runs in them."
        actions={
          <>
            <Button variant="outline" size="sm" onClick={q.reload} aria-busy={q.loading}>
              <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
              Refresh
            </Button>
            <Button size="sm" onClick={() => setEditing("new")}>
              <Plus aria-hidden="true" />
              New workspace
            </Button>
          </>
        }
      />
      <div aria-live="polite">
        {notice && (
          <Alert role="status" className="mb-4">
            {notice}
          </Alert>
        )}
      </div>
      <QueryError error={q.error} stale={list !== undefined} />
      {list === undefined ? (
        !q.error && <Loading what="workspaces" />
      ) : list.length === 0 ? (
        <EmptyState icon={Network} title="No workspaces yet">
          <p>A workspace appears when a sandbox registers in it, or when you create one here.</p>
        </EmptyState>
      ) : (
        <div tabIndex={0} role="region" aria-label="Workspaces table" className="overflow-x-auto rounded-lg border border-border">
          <table className="w-full min-w-[56rem] text-sm">
            <caption className="sr-only">Workspaces</caption>
            <thead className="bg-muted text-left">
              <tr>
                {["Workspace", "Description", "Sandboxes", "Defaults for managed sandboxes", "Updated", "Actions"].map((h) => (
                  <th key={h} scope="col" className="px-3 py-2 font-medium">
                    {h}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {list.map((ws) => (
                <tr key={ws.id} className="border-t border-border align-top" data-workspace={ws.id}>
                  <th scope="row" className="px-3 py-2 text-left font-medium">
                    <span className="font-mono text-xs">{ws.id}</span>
                    {ws.name !== ws.id && <span className="block text-muted-foreground">{ws.name}</span>}
                  </th>
                  <td className="max-w-64 px-3 py-2 break-words">{ws.description || <span className="text-muted-foreground">none</span>}</td>
                  <td className="px-3 py-2">
                    <Link className="text-primary underline" to={`/sandboxes?workspace=${encodeURIComponent(ws.id)}`}>
                      {ws.sandbox_count} sandbox{ws.sandbox_count === 1 ? "" : "es"}
                    </Link>
                  </td>
                  <td className="px-3 py-2">
                    <Settings settings={ws.settings} />
                  </td>
                  <td className="px-3 py-2 whitespace-nowrap" title={formatTime(ws.updated_at)}>
                    {formatAgo(ws.updated_at, now)}
                  </td>
                  <td className="px-3 py-2">
                    <div className="flex gap-1">
                      <Button variant="outline" size="sm" onClick={() => setEditing(ws)} aria-label={`Edit workspace ${ws.id}`}>
                        <Pencil aria-hidden="true" />
                        Edit
                      </Button>
                      <Button variant="outline" size="sm" onClick={() => setDeleting(ws)} aria-label={`Delete workspace ${ws.id}`}>
                        <Trash2 aria-hidden="true" />
                        Delete
                      </Button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {editing !== null && (
        <EditDialog
          workspace={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={(ws, created) => {
            setEditing(null);
            done(created ? `Workspace ${ws.id} created.` : `Workspace ${ws.id} saved.`);
          }}
        />
      )}
      {deleting !== null && (
        <DeleteDialog
          workspace={deleting}
          onClose={() => setDeleting(null)}
          onDeleted={(text) => {
            setDeleting(null);
            done(text);
          }}
        />
      )}
    </>
  );
}

function Settings({ settings }: { settings: Record<string, unknown> }) {
  const form = workspaceToForm({ id: "", name: "", description: "", settings });
  const parts = [
    form.default_image && `image ${form.default_image}`,
    form.memory_mb && `${form.memory_mb} MB`,
    form.cpus && `${form.cpus} CPU`,
    form.pids && `${form.pids} pids`,
    form.idle_stop_minutes && `stop after ${form.idle_stop_minutes} min idle`,
  ].filter(Boolean);
  return parts.length ? <span className="text-xs">{parts.join(" · ")}</span> : <span className="text-muted-foreground">none</span>;
}

const FIELDS: { key: keyof WorkspaceForm; label: string; hint?: string; type?: string }[] = [
  { key: "name", label: "Name", hint: "shown to people; the id by default" },
  { key: "description", label: "Description" },
  { key: "default_image", label: "Default image", hint: "e.g. aintandem/collab-agent" },
  { key: "memory_mb", label: "Memory limit (MB)", type: "number" },
  { key: "cpus", label: "CPU limit", type: "number" },
  { key: "pids", label: "Process limit", type: "number" },
  { key: "idle_stop_minutes", label: "Stop when idle for (minutes)", type: "number" },
];

function EditDialog({
  workspace,
  onClose,
  onSaved,
}: {
  workspace: Workspace | null;
  onClose: () => void;
  onSaved: (ws: Workspace, created: boolean) => void;
}) {
  const { api } = useAuth();
  const creating = workspace === null;
  const [form, setForm] = useState<WorkspaceForm>(workspace ? workspaceToForm(workspace) : EMPTY_WORKSPACE_FORM);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const base = useId();

  async function submit(e: FormEvent) {
    e.preventDefault();
    const { body, errors: found } = formToWorkspace(form, creating);
    setErrors(found);
    setError(null);
    if (Object.keys(found).length > 0) return;
    setBusy(true);
    try {
      const saved = creating
        ? // The document gives POST /workspaces the answer's schema as its body (created_at etc. required); the bus
          // takes id, name, description and settings.
          await api.send("post", "/api/v1/workspaces", { body: body as unknown as Workspace })
        : await api.send("put", "/api/v1/workspaces/{workspace_id}", {
            path: { workspace_id: workspace.id },
            body: body as Schemas["WorkspaceUpdate"],
          });
      onSaved(saved, creating);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const details = error instanceof ApiError && error.code === "validation_error" ? flattenDetails(error.details) : [];

  return (
    <Dialog open onOpenChange={(o) => !o && onClose()}>
      <DialogContent data-testid="workspace-dialog">
        <DialogTitle>{creating ? "New workspace" : `Edit workspace ${workspace.id}`}</DialogTitle>
        <DialogDescription>
          {creating ? "Its id cannot change later." : "Saving replaces every setting with what the form shows."} Empty fields are left
          out.
        </DialogDescription>
        <form className="flex flex-col gap-3" onSubmit={(e) => void submit(e)} noValidate>
          {creating && <Field id={`${base}-id`} label="Workspace id" value={form.id} error={errors.id} onChange={(v) => setForm({ ...form, id: v })} required />}
          {FIELDS.map((f) => (
            <Field
              key={f.key}
              id={`${base}-${f.key}`}
              label={f.label}
              hint={f.hint}
              type={f.type}
              value={form[f.key]}
              error={errors[f.key]}
              onChange={(v) => setForm({ ...form, [f.key]: v })}
            />
          ))}
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
              {creating ? "Create workspace" : "Save changes"}
            </Button>
          </DialogFooter>
        </form>
      </DialogContent>
    </Dialog>
  );
}

function Field({
  id,
  label,
  hint,
  type,
  value,
  error,
  required,
  onChange,
}: {
  id: string;
  label: string;
  hint?: string;
  type?: string;
  value: string;
  error?: string;
  required?: boolean;
  onChange: (v: string) => void;
}) {
  const describedBy = [hint ? `${id}-hint` : null, error ? `${id}-error` : null].filter(Boolean).join(" ") || undefined;
  return (
    <div className="flex flex-col gap-1.5">
      <Label htmlFor={id}>{label}</Label>
      <Input
        id={id}
        type={type ?? "text"}
        step={type === "number" ? "any" : undefined}
        value={value}
        required={required}
        aria-invalid={error ? true : undefined}
        aria-describedby={describedBy}
        onChange={(e) => onChange(e.target.value)}
      />
      {hint && (
        <span id={`${id}-hint`} className="text-xs text-muted-foreground">
          {hint}
        </span>
      )}
      {error && (
        <span id={`${id}-error`} className="text-xs text-destructive">
          {label}: {error}
        </span>
      )}
    </div>
  );
}

function DeleteDialog({ workspace, onClose, onDeleted }: { workspace: Workspace; onClose: () => void; onDeleted: (text: string) => void }) {
  const { api } = useAuth();
  const [force, setForce] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const forceId = useId();
  const hasSandboxes = workspace.sandbox_count > 0;

  async function remove() {
    setBusy(true);
    setError(null);
    try {
      const result = await api.send("delete", "/api/v1/workspaces/{workspace_id}", {
        path: { workspace_id: workspace.id },
        query: force ? { force: true } : undefined,
      });
      const n = result.deleting_sandboxes.length;
      onDeleted(`Workspace ${workspace.id} deleted${n ? `; its ${n} managed sandbox${n === 1 ? " is" : "es are"} being removed` : ""}.`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  return (
    <AlertDialog open onOpenChange={(o) => !o && onClose()}>
      <AlertDialogContent data-testid="workspace-delete-dialog">
        <AlertDialogTitle>Delete workspace {workspace.id}?</AlertDialogTitle>
        <AlertDialogDescription>
          {hasSandboxes
            ? `It has ${workspace.sandbox_count} sandbox${workspace.sandbox_count === 1 ? "" : "es"}. The bus refuses to delete it unless you also unregister them (and stop and remove the managed ones).`
            : "It has no sandboxes. This cannot be undone."}
        </AlertDialogDescription>
        {hasSandboxes && (
          <div className="flex items-start gap-2 text-sm">
            <input id={forceId} type="checkbox" className="mt-0.5 size-4" checked={force} onChange={(e) => setForce(e.target.checked)} />
            <Label htmlFor={forceId} className="leading-snug">
              Also unregister its {workspace.sandbox_count} sandbox{workspace.sandbox_count === 1 ? "" : "es"} and remove the managed
              ones
            </Label>
          </div>
        )}
        <ActionError error={error} />
        <DialogFooter>
          <AlertDialogCancel>Cancel</AlertDialogCancel>
          <Button variant="destructive" onClick={() => void remove()} disabled={busy || (hasSandboxes && !force)} aria-busy={busy}>
            Delete workspace
          </Button>
        </DialogFooter>
      </AlertDialogContent>
    </AlertDialog>
  );
}
