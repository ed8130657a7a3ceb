import { RotateCcw, Trash2 } from "lucide-react";
import { useId, useReducer, useState } from "react";
import type { Schemas } from "@/api/client";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { Button } from "@/components/ui/button";
import { AlertDialog, AlertDialogCancel, AlertDialogContent, AlertDialogDescription, AlertDialogTitle, DialogFooter } from "@/components/ui/dialog";
import { Input, Label } from "@/components/ui/input";
import {
  bulkReducer,
  filterQuery,
  hasFilter,
  MAX_BULK_REPLAY,
  purgeQuery,
  replayBody,
  type BulkKind,
  type BulkState,
  type DeadLetterFilters,
} from "@/lib/deadLetters";

/** Replay or purge what the current filter matches: count first (GET …?limit=1 → total), then confirm. */
export function BulkAction({ kind, filters, onDone }: { kind: BulkKind; filters: DeadLetterFilters; onDone: () => void }) {
  const { api } = useAuth();
  const [state, dispatch] = useReducer(bulkReducer(kind), { step: "idle" });
  const [limit, setLimit] = useState(1000);
  const limitId = useId();
  const open = state.step !== "idle";
  const filtered = hasFilter(filters);

  async function start() {
    dispatch({ type: "start" });
    try {
      const page = await api.get("/api/v1/dead-letters", { query: { ...filterQuery(filters), limit: 1 } as never });
      setLimit(Math.max(1, Math.min(page.total, 1000)));
      dispatch({ type: "counted", total: page.total, filtered });
    } catch (e) {
      dispatch({ type: "failed", error: e });
    }
  }

  async function run() {
    try {
      if (kind === "replay") {
        const result = await api.send("post", "/api/v1/dead-letters/replay", {
          body: replayBody(filters, limit) as Schemas["BulkReplay"],
        });
        dispatch({ type: "finished", done: result.replayed });
      } else {
        const result = await api.send("delete", "/api/v1/dead-letters", { query: purgeQuery(filters) as never });
        dispatch({ type: "finished", done: result.purged });
      }
      onDone();
    } catch (e) {
      dispatch({ type: "failed", error: e });
    }
  }

  function confirm() {
    const willRun = state.step === "confirm-all" || (state.step === "confirm" && !state.needsAll && state.total > 0);
    dispatch({ type: "confirm" });
    if (willRun) void run();
  }

  const Icon = kind === "replay" ? RotateCcw : Trash2;
  const count = state.step === "confirm" || state.step === "confirm-all" ? state.total : 0;

  return (
    <AlertDialog open={open} onOpenChange={(o) => !o && dispatch({ type: "reset" })}>
      <Button variant={kind === "purge" ? "destructive" : "secondary"} onClick={() => void start()}>
        <Icon aria-hidden="true" />
        {kind === "replay" ? "Replay matching…" : "Purge matching…"}
      </Button>
      <AlertDialogContent data-testid={`bulk-${kind}-dialog`}>
        <AlertDialogTitle>
          {kind === "replay" ? "Replay dead letters" : "Purge dead letters"}
          {filtered ? " matching the filter" : ""}
        </AlertDialogTitle>
        <BulkStep kind={kind} state={state} filters={filters} limit={limit} limitId={limitId} onLimit={setLimit} />
        <DialogFooter>
          <AlertDialogCancel>{state.step === "done" || state.step === "error" ? "Close" : "Cancel"}</AlertDialogCancel>
          <ConfirmButton kind={kind} state={state} filtered={filtered} replayCount={Math.min(count, limit)} onConfirm={confirm} />
        </DialogFooter>
      </AlertDialogContent>
    </AlertDialog>
  );
}

/** What the dialog says at each step: counting, the count and the question, working, the result or the error. */
function BulkStep({
  kind,
  state,
  filters,
  limit,
  limitId,
  onLimit,
}: {
  kind: BulkKind;
  state: BulkState;
  filters: DeadLetterFilters;
  limit: number;
  limitId: string;
  onLimit: (limit: number) => void;
}) {
  const verb = kind === "replay" ? "replay" : "purge";
  const filtered = hasFilter(filters);
  return (
    <>
      {state.step === "counting" && (
        <AlertDialogDescription role="status">Counting the dead letters that match…</AlertDialogDescription>
      )}
      {state.step === "confirm" && state.total === 0 && (
        <AlertDialogDescription>No dead letter matches{filtered ? " this filter" : ""}: nothing to {verb}.</AlertDialogDescription>
      )}
      {state.step === "confirm" && state.total > 0 && (
        <>
          <AlertDialogDescription data-testid="bulk-count">
            {state.total} dead letter{state.total === 1 ? "" : "s"} match{state.total === 1 ? "es" : ""} —{" "}
            {verb} them?
            {kind === "purge" && " Purged dead letters are deleted for good."}
            {kind === "purge" && !filtered && " No filter is set: this purges every dead letter."}
          </AlertDialogDescription>
          <FilterSummary filters={filters} />
          {kind === "replay" && <ReplayLimit id={limitId} limit={limit} onLimit={onLimit} />}
        </>
      )}
      {state.step === "confirm-all" && (
        <AlertDialogDescription data-testid="bulk-count">
          Really purge <strong>all {state.total}</strong> dead letters? There is no filter; this cannot be undone.
        </AlertDialogDescription>
      )}
      {state.step === "running" && <AlertDialogDescription role="status">Working…</AlertDialogDescription>}
      {state.step === "done" && (
        <AlertDialogDescription role="status" data-testid="bulk-result">
          {kind === "replay" ? `Replayed ${state.done} dead letter${state.done === 1 ? "" : "s"}.` : `Purged ${state.done} dead letter${state.done === 1 ? "" : "s"}.`}
        </AlertDialogDescription>
      )}
      {state.step === "error" && <ActionError error={state.error} />}
    </>
  );
}

function ReplayLimit({ id, limit, onLimit }: { id: string; limit: number; onLimit: (limit: number) => void }) {
  return (
    <div className="flex flex-col gap-1.5">
      <Label htmlFor={id}>Replay at most</Label>
      <Input
        id={id}
        type="number"
        min={1}
        max={MAX_BULK_REPLAY}
        value={limit}
        onChange={(e) => onLimit(Math.max(1, Math.min(MAX_BULK_REPLAY, Number(e.target.value) || 1)))}
        className="w-32"
      />
      <span className="text-xs text-muted-foreground">Up to {MAX_BULK_REPLAY} per call.</span>
    </div>
  );
}

function ConfirmButton({
  kind,
  state,
  filtered,
  replayCount,
  onConfirm,
}: {
  kind: BulkKind;
  state: BulkState;
  filtered: boolean;
  replayCount: number;
  onConfirm: () => void;
}) {
  if (state.step === "confirm" && state.total > 0) {
    return (
      <Button variant={kind === "purge" ? "destructive" : "default"} onClick={onConfirm}>
        {kind === "replay"
          ? `Replay ${replayCount} dead letter${replayCount === 1 ? "" : "s"}`
          : filtered
            ? `Purge ${state.total} dead letter${state.total === 1 ? "" : "s"}`
            : `Purge all ${state.total} dead letters…`}
      </Button>
    );
  }
  if (state.step === "confirm-all") {
    return (
      <Button variant="destructive" onClick={onConfirm}>
        Yes, purge every dead letter
      </Button>
    );
  }
  return null;
}

/** The filter a bulk action applies to, as query parameters. */
function FilterSummary({ filters }: { filters: DeadLetterFilters }) {
  const entries = Object.entries(filterQuery(filters));
  if (entries.length === 0) return <p className="text-sm text-muted-foreground">Filter: none (every dead letter).</p>;
  return (
    <dl className="grid grid-cols-[auto_1fr] gap-x-3 gap-y-1 text-sm">
      {entries.map(([k, v]) => (
        <div key={k} className="contents">
          <dt className="font-medium">{k}</dt>
          <dd className="font-mono text-xs break-all">{v}</dd>
        </div>
      ))}
    </dl>
  );
}
