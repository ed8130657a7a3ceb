import { ArrowLeft, ArrowRight, Inbox, RefreshCw, RotateCcw, Search, Trash2 } from "lucide-react";
import { useEffect, useId, useReducer, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router";
import type { Schemas } from "@/api/client";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { EmptyState } from "@/components/EmptyState";
import { JsonBlock } from "@/components/JsonBlock";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
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
import { Input, Label, Select } from "@/components/ui/input";
import {
  applyDeadLetterFilters,
  bulkReducer,
  DEAD_LETTER_REASONS,
  filterQuery,
  hasFilter,
  isoToLocalInput,
  localInputToIso,
  MAX_BULK_REPLAY,
  NO_DEAD_LETTER_FILTERS,
  parseDeadLetterFilters,
  purgeQuery,
  replayBody,
  type BulkKind,
  type DeadLetterFilters,
} from "@/lib/deadLetters";
import { useBusEvents } from "@/lib/events";
import { isIdentifier } from "@/lib/filters";
import { formatAgo, formatTime } from "@/lib/format";
import { useApi, useDebounced, useNow } from "@/lib/useApi";

type DeadLetter = Schemas["DeadLetter"];

const PAGE_SIZE = 50;
const EVENTS = ["message.dead_lettered", "dead_letter.replayed"] as const;

export function DeadLetters() {
  const { api } = useAuth();
  const [searchParams, setSearchParams] = useSearchParams();
  const parsed = parseDeadLetterFilters(searchParams);
  const filters: DeadLetterFilters = {
    reason: parsed.reason,
    sandbox_id: parsed.sandbox_id,
    message_id: parsed.message_id,
    since: parsed.since,
    until: parsed.until,
  };
  const filterKey = JSON.stringify(filters);
  const after = parsed.after;
  const inspect = searchParams.get("inspect");
  const now = useNow(10_000);
  // Cursors of the pages before this one, so "Previous page" can go back (the API pages forward only).
  const [history, setHistory] = useState<number[]>([]);
  const [notice, setNotice] = useState<string | null>(null);
  const [rowError, setRowError] = useState<unknown>(null);

  const q = useApi(
    (signal) =>
      api.get("/api/v1/dead-letters", {
        query: { ...filterQuery(filters), after: after ?? undefined, limit: PAGE_SIZE } as never,
        signal,
      }),
    [api, filterKey, after],
  );
  const refetch = useDebounced(q.reload, 750);
  useBusEvents(EVENTS, refetch);

  function setFilters(next: DeadLetterFilters) {
    setHistory([]);
    const params = applyDeadLetterFilters(next, searchParams);
    params.delete("inspect");
    setSearchParams(params, { replace: true });
  }

  function goTo(cursor: number | null) {
    setSearchParams(applyDeadLetterFilters(filters, searchParams, cursor));
  }

  function openInspect(id: number | null) {
    const params = new URLSearchParams(searchParams);
    if (id === null) params.delete("inspect");
    else params.set("inspect", String(id));
    setSearchParams(params, { replace: true });
  }

  async function replayOne(dl: DeadLetter) {
    setRowError(null);
    setNotice(null);
    try {
      const result = await api.send("post", "/api/v1/dead-letters/{dead_letter_id}/replay", {
        path: { dead_letter_id: dl.id },
      });
      setNotice(
        `Dead letter ${result.id} (message ${result.message_id}) replayed` +
          (result.redelivery === "mailbox" ? " into its mailbox." : "; it is queued for delivery."),
      );
      q.reload();
    } catch (e) {
      setRowError(e);
    }
  }

  const page = q.data;
  const filtered = hasFilter(filters);

  return (
    <>
      <PageHeader
        title="Dead letters"
        description="Messages the bus could not deliver or that were refused: inspect, replay or purge them."
        actions={
          <Button variant="outline" size="sm" onClick={q.reload} aria-busy={q.loading}>
            <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
            Refresh
          </Button>
        }
      />
      <FilterForm filters={filters} onApply={setFilters} />
      {parsed.invalid.length > 0 && (
        <Alert variant="warning" className="mb-4" role="status">
          The address had an invalid {parsed.invalid.join(", ")} filter; it is ignored.
        </Alert>
      )}

      <div className="mb-4 flex flex-wrap items-center gap-2">
        <BulkAction kind="replay" filters={filters} onDone={q.reload} />
        <BulkAction kind="purge" filters={filters} onDone={q.reload} />
      </div>

      <div aria-live="polite" className="mb-2">
        {notice && (
          <Alert variant="default" role="status" className="mb-2">
            {notice}
          </Alert>
        )}
      </div>
      <ActionError error={rowError} className="mb-4" />
      <QueryError error={q.error} stale={page !== undefined} />

      {page === undefined ? (
        !q.error && <Loading what="dead letters" />
      ) : page.dead_letters.length === 0 ? (
        <EmptyState icon={Inbox} title={filtered ? "No dead letter matches these filters" : "No dead letters"}>
          {filtered ? (
            <p>Change or clear the filters to see others.</p>
          ) : (
            <p>
              Every message was delivered (or is still on its way). A message lands here when its recipient NACKs
              it, its ttl passes, it runs out of attempts or a runaway guard stops it.
            </p>
          )}
          {after !== null && (
            <p>
              <Button variant="link" onClick={() => goTo(null)}>
                Go to the first page
              </Button>
            </p>
          )}
        </EmptyState>
      ) : (
        <>
          <p className="mb-2 text-sm text-muted-foreground" aria-live="polite" data-testid="dead-letter-total">
            {page.total} dead letter{page.total === 1 ? "" : "s"} match{page.total === 1 ? "es" : ""}
            {filtered ? " these filters" : ""}; showing {page.count} on this page.
          </p>
          <div tabIndex={0} role="region" aria-label="Dead letters table" className="overflow-x-auto rounded-lg border border-border">
            <table className="w-full min-w-[60rem] text-sm">
              <caption className="sr-only">Dead letters{filtered ? " (filtered)" : ""}</caption>
              <thead className="bg-muted text-left">
                <tr>
                  {["Id", "When", "Reason", "Sandbox", "Message", "Attempts", "Last error", "Actions"].map((h) => (
                    <th key={h} scope="col" className="px-3 py-2 font-medium">
                      {h}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {page.dead_letters.map((dl) => (
                  <tr key={dl.id} className="border-t border-border align-top" data-dead-letter={dl.id}>
                    <th scope="row" className="px-3 py-2 text-left font-mono text-xs font-medium">
                      {dl.id}
                    </th>
                    <td className="px-3 py-2 whitespace-nowrap">
                      <time dateTime={dl.created_at} title={formatTime(dl.created_at)}>
                        {formatAgo(dl.created_at, now)}
                      </time>
                    </td>
                    <td className="px-3 py-2">
                      <Badge variant="destructive">{dl.reason}</Badge>
                    </td>
                    <td className="px-3 py-2 font-mono text-xs">{dl.sandbox_id ?? <span className="text-muted-foreground">broadcast</span>}</td>
                    <td className="px-3 py-2 font-mono text-xs">
                      <Link className="text-primary underline" to={`/messages/${encodeURIComponent(dl.message_id)}`}>
                        {dl.message_id}
                      </Link>
                    </td>
                    <td className="px-3 py-2">{dl.attempts}</td>
                    <td className="max-w-64 px-3 py-2 break-words">{dl.last_error ?? <span className="text-muted-foreground">none</span>}</td>
                    <td className="px-3 py-2">
                      <div className="flex gap-1">
                        <Button variant="outline" size="sm" onClick={() => openInspect(dl.id)} aria-label={`Inspect dead letter ${dl.id}`}>
                          <Search aria-hidden="true" />
                          Inspect
                        </Button>
                        <Button variant="outline" size="sm" onClick={() => void replayOne(dl)} aria-label={`Replay dead letter ${dl.id}`}>
                          <RotateCcw aria-hidden="true" />
                          Replay
                        </Button>
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <nav aria-label="Pages" className="mt-3 flex items-center gap-2">
            <Button
              variant="outline"
              size="sm"
              disabled={after === null}
              onClick={() => {
                const prev = history.at(-1) ?? null;
                setHistory((h) => h.slice(0, -1));
                goTo(prev);
              }}
            >
              <ArrowLeft aria-hidden="true" />
              Previous page
            </Button>
            <Button
              variant="outline"
              size="sm"
              disabled={page.next_after === null}
              onClick={() => {
                setHistory((h) => [...h, after ?? 0]);
                goTo(page.next_after);
              }}
            >
              Next page
              <ArrowRight aria-hidden="true" />
            </Button>
          </nav>
        </>
      )}
      {inspect !== null && (
        <InspectDialog
          id={inspect}
          onClose={() => openInspect(null)}
          onChanged={(text) => {
            setNotice(text);
            q.reload();
          }}
        />
      )}
    </>
  );
}

function FilterForm({ filters, onApply }: { filters: DeadLetterFilters; onApply: (f: DeadLetterFilters) => void }) {
  const ids = { reason: useId(), sandbox: useId(), message: useId(), since: useId(), until: useId() };
  const [draft, setDraft] = useState({
    reason: filters.reason ?? "",
    sandbox_id: filters.sandbox_id ?? "",
    message_id: filters.message_id ?? "",
    since: isoToLocalInput(filters.since),
    until: isoToLocalInput(filters.until),
  });
  const key = JSON.stringify(filters);
  useEffect(() => {
    setDraft({
      reason: filters.reason ?? "",
      sandbox_id: filters.sandbox_id ?? "",
      message_id: filters.message_id ?? "",
      since: isoToLocalInput(filters.since),
      until: isoToLocalInput(filters.until),
    });
  }, [key]);
  const badSandbox = draft.sandbox_id.trim() !== "" && !isIdentifier(draft.sandbox_id.trim());
  const badMessage = draft.message_id.trim() !== "" && !isIdentifier(draft.message_id.trim());

  function submit(e: FormEvent) {
    e.preventDefault();
    if (badSandbox || badMessage) return;
    onApply({
      reason: (draft.reason || null) as DeadLetterFilters["reason"],
      sandbox_id: draft.sandbox_id.trim() || null,
      message_id: draft.message_id.trim() || null,
      since: localInputToIso(draft.since),
      until: localInputToIso(draft.until),
    });
  }

  return (
    <form role="search" aria-label="Filter dead letters" className="mb-4 flex flex-wrap items-end gap-3" onSubmit={submit}>
      <div className="flex w-44 flex-col gap-1.5">
        <Label htmlFor={ids.reason}>Reason</Label>
        <Select id={ids.reason} value={draft.reason} onChange={(e) => setDraft({ ...draft, reason: e.target.value })}>
          <option value="">Any reason</option>
          {DEAD_LETTER_REASONS.map((r) => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </Select>
      </div>
      <div className="flex w-44 flex-col gap-1.5">
        <Label htmlFor={ids.sandbox}>Sandbox</Label>
        <Input
          id={ids.sandbox}
          value={draft.sandbox_id}
          aria-invalid={badSandbox}
          onChange={(e) => setDraft({ ...draft, sandbox_id: e.target.value })}
        />
      </div>
      <div className="flex w-64 flex-col gap-1.5">
        <Label htmlFor={ids.message}>Message id</Label>
        <Input
          id={ids.message}
          value={draft.message_id}
          aria-invalid={badMessage}
          onChange={(e) => setDraft({ ...draft, message_id: e.target.value })}
        />
      </div>
      <div className="flex w-52 flex-col gap-1.5">
        <Label htmlFor={ids.since}>Since</Label>
        <Input id={ids.since} type="datetime-local" value={draft.since} onChange={(e) => setDraft({ ...draft, since: e.target.value })} />
      </div>
      <div className="flex w-52 flex-col gap-1.5">
        <Label htmlFor={ids.until}>Until</Label>
        <Input id={ids.until} type="datetime-local" value={draft.until} onChange={(e) => setDraft({ ...draft, until: e.target.value })} />
      </div>
      <Button type="submit" size="default">
        Apply filters
      </Button>
      {hasFilter(filters) && (
        <Button variant="ghost" onClick={() => onApply(NO_DEAD_LETTER_FILTERS)}>
          Clear filters
        </Button>
      )}
      {(badSandbox || badMessage) && (
        <p role="alert" className="w-full text-sm text-destructive">
          {badSandbox ? "The sandbox" : "The message id"} is not a valid identifier (letters, digits and _ . : @ -).
        </p>
      )}
    </form>
  );
}

/** Replay or purge what the current filter matches: count first (GET …?limit=1 → total), then confirm. */
function BulkAction({ kind, filters, onDone }: { kind: BulkKind; filters: DeadLetterFilters; onDone: () => void }) {
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

  const verb = kind === "replay" ? "replay" : "purge";
  const Icon = kind === "replay" ? RotateCcw : Trash2;
  const count = state.step === "confirm" || state.step === "confirm-all" ? state.total : 0;
  const replayCount = Math.min(count, limit);

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
            {kind === "replay" && (
              <div className="flex flex-col gap-1.5">
                <Label htmlFor={limitId}>Replay at most</Label>
                <Input
                  id={limitId}
                  type="number"
                  min={1}
                  max={MAX_BULK_REPLAY}
                  value={limit}
                  onChange={(e) => setLimit(Math.max(1, Math.min(MAX_BULK_REPLAY, Number(e.target.value) || 1)))}
                  className="w-32"
                />
                <span className="text-xs text-muted-foreground">Up to {MAX_BULK_REPLAY} per call.</span>
              </div>
            )}
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
        <DialogFooter>
          <AlertDialogCancel>{state.step === "done" || state.step === "error" ? "Close" : "Cancel"}</AlertDialogCancel>
          {state.step === "confirm" && state.total > 0 && (
            <Button variant={kind === "purge" ? "destructive" : "default"} onClick={confirm}>
              {kind === "replay"
                ? `Replay ${replayCount} dead letter${replayCount === 1 ? "" : "s"}`
                : filtered
                  ? `Purge ${state.total} dead letter${state.total === 1 ? "" : "s"}`
                  : `Purge all ${state.total} dead letters…`}
            </Button>
          )}
          {state.step === "confirm-all" && (
            <Button variant="destructive" onClick={confirm}>
              Yes, purge every dead letter
            </Button>
          )}
        </DialogFooter>
      </AlertDialogContent>
    </AlertDialog>
  );
}

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

function InspectDialog({ id, onClose, onChanged }: { id: string; onClose: () => void; onChanged: (text: string) => void }) {
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
        {dl && (
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
        )}
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
