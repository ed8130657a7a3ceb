import { useEffect, useId, useState, type FormEvent } from "react";
import { useNavigate } from "react-router";
import type { Schemas } from "@/api/client";
import { ApiError } from "@/api/errors";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { Button } from "@/components/ui/button";
import { Dialog, DialogContent, DialogDescription, DialogFooter, DialogTitle } from "@/components/ui/dialog";
import { EMPTY_CREATE_FORM, formToCreateSandbox, type CreateSandboxForm } from "@/lib/sandboxes";
import { useApi } from "@/lib/useApi";
import { flattenDetails } from "@/lib/workspaces";
import { CreateSandboxFields } from "./CreateSandboxFields";

/** Create a managed sandbox (POST /api/v1/sandboxes), then open its page to watch it start. */
export function CreateSandboxDialog({
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
  const workspaceHint = workspaces.error
    ? "The workspaces could not be listed."
    : workspaces.data && ids.length === 0
      ? "No workspace exists yet: create one on the Workspaces page first."
      : "its defaults (image, limits) apply";

  return (
    <Dialog open onOpenChange={(o) => !o && onClose()}>
      <DialogContent data-testid="create-sandbox-dialog">
        <DialogTitle>Create a managed sandbox</DialogTitle>
        <DialogDescription>
          The bus creates and starts its container; empty fields take the workspace's (or the bus's) defaults.
          {limit !== null && inUse !== null && ` This edition runs at most ${limit} managed sandboxes; ${inUse} exist.`}
        </DialogDescription>
        <form className="flex flex-col gap-3" onSubmit={(e) => void submit(e)} noValidate>
          <CreateSandboxFields base={base} form={form} onForm={setForm} errors={errors} workspaces={choices} workspaceHint={workspaceHint} />
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
