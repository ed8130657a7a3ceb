import { RefreshCw } from "lucide-react";
import { useState } from "react";
import { useSearchParams } from "react-router";
import type { Schemas } from "@/api/client";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { applyDeadLetterFilters, filterQuery, hasFilter, parseDeadLetterFilters, type DeadLetterFilters } from "@/lib/deadLetters";
import { useBusEvents } from "@/lib/events";
import { useApi, useDebounced, useNow } from "@/lib/useApi";
import { BulkAction } from "./deadLetters/BulkAction";
import { DeadLetterTable, NoDeadLetters, Pager } from "./deadLetters/DeadLetterTable";
import { FilterForm } from "./deadLetters/FilterForm";
import { InspectDialog } from "./deadLetters/InspectDialog";

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

  function previousPage() {
    const prev = history.at(-1) ?? null;
    setHistory((h) => h.slice(0, -1));
    goTo(prev);
  }

  function nextPage(cursor: number | null) {
    setHistory((h) => [...h, after ?? 0]);
    goTo(cursor);
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
        <NoDeadLetters filtered={filtered} onFirstPage={after !== null ? () => goTo(null) : null} />
      ) : (
        <>
          <p className="mb-2 text-sm text-muted-foreground" aria-live="polite" data-testid="dead-letter-total">
            {page.total} dead letter{page.total === 1 ? "" : "s"} match{page.total === 1 ? "es" : ""}
            {filtered ? " these filters" : ""}; showing {page.count} on this page.
          </p>
          <DeadLetterTable
            deadLetters={page.dead_letters}
            filtered={filtered}
            now={now}
            onInspect={openInspect}
            onReplay={(dl) => void replayOne(dl)}
          />
          <Pager
            hasPrevious={after !== null}
            hasNext={page.next_after !== null}
            onPrevious={previousPage}
            onNext={() => nextPage(page.next_after)}
          />
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
