import { Play, Square, Trash2 } from "lucide-react";
import { useState } from "react";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { Button } from "@/components/ui/button";
import { AlertDialog, AlertDialogCancel, AlertDialogContent, AlertDialogDescription, AlertDialogTitle, DialogFooter } from "@/components/ui/dialog";
import type { LifecycleActions } from "@/lib/sandboxes";

export type Command = "start" | "stop";

/** Start, Stop and Delete: only those that apply in the sandbox's state. */
export function LifecycleButtons({
  actions,
  busy,
  onCommand,
  onDelete,
}: {
  actions: LifecycleActions;
  busy: Command | null;
  onCommand: (kind: Command) => void;
  onDelete: () => void;
}) {
  return (
    <div className="flex flex-wrap gap-2" role="group" aria-label="Lifecycle">
      {actions.start && (
        <Button size="sm" onClick={() => onCommand("start")} disabled={busy !== null} aria-busy={busy === "start"}>
          <Play aria-hidden="true" />
          Start
        </Button>
      )}
      {actions.stop && (
        <Button size="sm" variant="outline" onClick={() => onCommand("stop")} disabled={busy !== null} aria-busy={busy === "stop"}>
          <Square aria-hidden="true" />
          Stop
        </Button>
      )}
      {actions.delete && (
        <Button size="sm" variant="destructive" onClick={onDelete} disabled={busy !== null}>
          <Trash2 aria-hidden="true" />
          Delete
        </Button>
      )}
      {!actions.start && !actions.stop && !actions.delete && (
        <p className="text-sm text-muted-foreground">Being deleted: it takes no other command.</p>
      )}
    </div>
  );
}

/** Asks before deleting a managed sandbox: the bus removes its container, then unregisters it. */
export function DeleteSandboxDialog({
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
