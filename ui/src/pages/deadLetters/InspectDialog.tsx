import { RotateCcw, Trash2 } from "lucide-react";
import { useState } from "react";
import { Link } from "react-router";
import type { Schemas } from "@/api/client";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { JsonBlock } from "@/components/JsonBlock";
import { QueryError } from "@/components/QueryStatus";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Dialog, DialogContent, DialogDescription, DialogFooter, DialogTitle } from "@/components/ui/dialog";
import { formatTime } from "@/lib/format";
import { useApi } from "@/lib/useApi";

/** One dead letter (`?inspect=ID`): its facts and message; replay or delete it (deleting asks first). */
export function InspectDialog({ id, onClose, onChanged }: { id: string; onClose: () => void; onChanged: (text: string) => void }) {
  const { api } = useAuth();
  const numeric = /^\d+$/.test(id) ? Number(id) : null;
  const q = useApi(
    (signal) =>
      numeric === null
        ? Promise.reject(new Error(`“${id}” is not a dead letter id.`))
        : api.get("/api/v1/dead-letters/{dead_letter_id}", { path: { dead_letter_id: numeric }, signal }),
    [api, numeric],
  );
  const [error, setError] = useState<unknown>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const dl = q.data;

  async function replay() {
    if (numeric === null) return;
    setError(null);
    try {
      const r = await api.send("post", "/api/v1/dead-letters/{dead_letter_id}/replay", { path: { dead_letter_id: numeric } });
      onChanged(`Dead letter ${r.id} (message ${r.message_id}) replayed.`);
      onClose();
    } catch (e) {
      setError(e);
    }
  }

  async function remove() {
    if (numeric === null) return;
    setError(null);
    try {
      await api.send("delete", "/api/v1/dead-letters/{dead_letter_id}", { path: { dead_letter_id: numeric } });
      onChanged(`Dead letter ${numeric} deleted.`);
      onClose();
    } catch (e) {
      setError(e);
      setConfirmDelete(false);
    }
  }

  return (
    <Dialog open onOpenChange={(o) => !o && onClose()}>
      <DialogContent className="max-w-2xl" data-testid="dead-letter-dialog">
        <DialogTitle>Dead letter {id}</DialogTitle>
        <DialogDescription>{dl ? `Message ${dl.message_id}, dead-lettered ${formatTime(dl.created_at)}.` : "Loading…"}</DialogDescription>
        <QueryError error={q.error} stale={false} />
        {dl && <DeadLetterFacts dl={dl} />}
        <ActionError error={error} />
        {confirmDelete ? (
          <div role="group" aria-label="Confirm deletion" className="flex flex-wrap items-center justify-end gap-2 rounded-md border border-destructive/50 p-3">
            <span className="mr-auto text-sm">Delete dead letter {id} for good?</span>
            <Button variant="outline" onClick={() => setConfirmDelete(false)}>
              Keep it
            </Button>
            <Button variant="destructive" onClick={() => void remove()}>
              Yes, delete it
            </Button>
          </div>
        ) : (
          <DialogFooter>
            <Button variant="outline" onClick={() => setConfirmDelete(true)} disabled={!dl}>
              <Trash2 aria-hidden="true" />
              Delete
            </Button>
            <Button onClick={() => void replay()} disabled={!dl}>
              <RotateCcw aria-hidden="true" />
              Replay
            </Button>
          </DialogFooter>
        )}
      </DialogContent>
    </Dialog>
  );
}

function DeadLetterFacts({ dl }: { dl: Schemas["DeadLetter"] }) {
  return (
    <>
      <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-1 text-sm">
        <dt className="font-medium">Reason</dt>
        <dd>
          <Badge variant="destructive">{dl.reason}</Badge>
        </dd>
        <dt className="font-medium">Last error</dt>
        <dd className="break-words">{dl.last_error ?? "none"}</dd>
        <dt className="font-medium">Attempts</dt>
        <dd>{dl.attempts}</dd>
        <dt className="font-medium">Recipient</dt>
        <dd className="font-mono text-xs">{dl.sandbox_id ?? "broadcast"}</dd>
        <dt className="font-medium">Message</dt>
        <dd className="font-mono text-xs">
          <Link className="text-primary underline" to={`/messages/${encodeURIComponent(dl.message_id)}`}>
            {dl.message_id}
          </Link>
        </dd>
      </dl>
      {dl.message && <JsonBlock value={dl.message} label="The dead letter's message" />}
    </>
  );
}
