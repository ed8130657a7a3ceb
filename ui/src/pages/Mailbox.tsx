import { ArrowLeft, ArrowRight, ChevronDown, ChevronRight, FileQuestion, Inbox, RefreshCw, SkipBack } from "lucide-react";
import { Fragment, useEffect, useId, useState, type FormEvent } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import type { Schemas } from "@/api/client";
import { ApiError } from "@/api/errors";
import { useAuth } from "@/auth/auth";
import { EmptyState } from "@/components/EmptyState";
import { JsonBlock } from "@/components/JsonBlock";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Badge, type BadgeProps } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Input, Label, Select } from "@/components/ui/input";
import { useBusEvents } from "@/lib/events";
import { formatAgo, formatTime } from "@/lib/format";
import { applyMailboxParams, entryAttempts, PAGE_SIZES, pageFacts, parseMailboxParams, unixToIso } from "@/lib/mailbox";
import { useApi, useDebounced, useNow } from "@/lib/useApi";

type Entry = Schemas["MailboxEntry"];

const ENTRY_STATE_VARIANT: Record<string, BadgeProps["variant"]> = {
  delivered: "warning",
  acked: "success",
  dead: "destructive",
  rerouted: "outline",
};

/** Events after which the entries shown may have changed (new ones, settled ones). */
const EVENTS = ["message.delivered", "message.dead_lettered", "message.rerouted", "dead_letter.replayed"] as const;

function concernsMailbox(data: Record<string, unknown>, id: string): boolean {
  if (data.sandbox_id === id || data.to_sandbox === id || data.from_sandbox === id) return true;
  return Array.isArray(data.recipients) && data.recipients.includes(id);
}

/** `/sandboxes/:sandboxId/mailbox`: a sandbox's mailbox entries, read without changing them. */
export function Mailbox() {
  const { sandboxId = "" } = useParams();
  const { api } = useAuth();
  const [searchParams, setSearchParams] = useSearchParams();
  const { since, limit, invalid } = parseMailboxParams(searchParams);
  const now = useNow(15_000);
  const [open, setOpen] = useState<Set<number>>(() => new Set());

  const q = useApi(
    (signal) => api.get("/api/v1/sandboxes/{sandbox_id}/messages", { path: { sandbox_id: sandboxId }, query: { since, limit }, signal }),
    [api, sandboxId, since, limit],
  );
  const refetch = useDebounced(q.reload, 1000);
  useBusEvents(EVENTS, (event) => {
    if (event === null || concernsMailbox(event.data, sandboxId)) refetch();
  });

  function goTo(cursor: number, push = true) {
    setSearchParams(applyMailboxParams({ since: cursor, limit }, searchParams), { replace: !push });
  }

  function toggle(seq: number) {
    setOpen((prev) => {
      const next = new Set(prev);
      if (next.has(seq)) next.delete(seq);
      else next.add(seq);
      return next;
    });
  }

  const page = q.data;
  const facts = page ? pageFacts(page) : null;
  const missing = q.error instanceof ApiError && q.error.status === 404;
  const sandboxPath = `/sandboxes/${encodeURIComponent(sandboxId)}`;

  return (
    <>
      <PageHeader
        title={`Mailbox of ${sandboxId}`}
        description={
          <>
            <Link className="text-primary underline" to={sandboxPath}>
              Sandbox {sandboxId}
            </Link>
            {" · "}Entries in delivery order (seq).
          </>
        }
        actions={
          <Button variant="outline" size="sm" onClick={q.reload} aria-busy={q.loading}>
            <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
            Refresh
          </Button>
        }
      />
      <Alert className="mb-4" data-testid="read-only-note">
        <Inbox aria-hidden="true" className="mt-0.5 shrink-0" />
        <span>
          Reading the mailbox here changes nothing: no entry is delivered, acknowledged or settled by it; each keeps its
          state. The sandbox's agent acknowledges what it handles.
        </span>
      </Alert>
      {invalid.length > 0 && (
        <Alert variant="warning" className="mb-4" role="status">
          The address had an invalid {invalid.join(" and ")}; it is ignored.
        </Alert>
      )}
      <CursorForm since={since} limit={limit} onApply={(s, l) => setSearchParams(applyMailboxParams({ since: s, limit: l }, searchParams))} />

      {missing ? (
        <EmptyState icon={FileQuestion} title="No such sandbox">
          <p>
            The bus has no registered sandbox {sandboxId}, so it shows no mailbox (an unregistered sandbox's mailbox is
            kept, but cannot be read until it registers again).{" "}
            <Link className="text-primary underline" to="/sandboxes">
              See every sandbox
            </Link>
            .
          </p>
        </EmptyState>
      ) : (
        <>
          <QueryError error={q.error} stale={page !== undefined} />
          {page === undefined || facts === null ? (
            !q.error && <Loading what="the mailbox" />
          ) : (
            <>
              <p className="mb-2 text-sm text-muted-foreground" aria-live="polite" data-testid="mailbox-summary">
                The mailbox's newest entry is seq <span data-testid="head-seq">{page.head_seq}</span>.{" "}
                {facts.first !== null
                  ? `Showing seq ${facts.first} to ${facts.last} (${page.entries.length} entr${page.entries.length === 1 ? "y" : "ies"} after seq ${page.since}).`
                  : page.head_seq === 0
                    ? "It is empty."
                    : `No entry after seq ${page.since}.`}
              </p>
              {facts.beyondHead && (
                <Alert variant="warning" role="status" className="mb-2">
                  This page starts after seq {page.since}, beyond the mailbox's newest entry ({page.head_seq}).
                </Alert>
              )}
              {page.entries.length === 0 ? (
                <EmptyState icon={Inbox} title={page.head_seq === 0 ? "No entries yet" : "Nothing after this point"}>
                  <p>
                    {page.head_seq === 0
                      ? "No message has been delivered to this sandbox yet."
                      : "New entries will appear here as messages are delivered."}
                  </p>
                  {since > 0 && (
                    <p>
                      <Button variant="link" onClick={() => goTo(0)}>
                        Go to the start of the mailbox
                      </Button>
                    </p>
                  )}
                </EmptyState>
              ) : (
                <EntriesTable entries={page.entries} open={open} onToggle={toggle} now={now} />
              )}
              <nav aria-label="Pages" className="mt-3 flex flex-wrap items-center gap-2">
                <Button
                  variant="outline"
                  size="sm"
                  disabled={since === 0}
                  onClick={() => goTo(0)}
                >
                  <SkipBack aria-hidden="true" />
                  First page
                </Button>
                <Button
                  variant="outline"
                  size="sm"
                  disabled={since === 0}
                  // A mailbox's seqs are 1, 2, 3 …: the page before starts `limit` earlier.
                  onClick={() => goTo(Math.max(0, since - limit))}
                >
                  <ArrowLeft aria-hidden="true" />
                  Previous page
                </Button>
                <Button
                  variant="outline"
                  size="sm"
                  disabled={!facts.more || page.next_since === since}
                  onClick={() => goTo(page.next_since)}
                >
                  Next page
                  <ArrowRight aria-hidden="true" />
                </Button>
                <span className="text-sm text-muted-foreground">
                  {facts.more ? `${page.head_seq - page.next_since} more after this page.` : "This is the newest page."}
                </span>
              </nav>
            </>
          )}
        </>
      )}
    </>
  );
}

/** Jump to a place in the mailbox, and the page size. */
function CursorForm({ since, limit, onApply }: { since: number; limit: number; onApply: (since: number, limit: number) => void }) {
  const ids = { since: useId(), limit: useId() };
  const [draft, setDraft] = useState(String(since));
  useEffect(() => setDraft(String(since)), [since]);
  const bad = !/^\d{1,16}$/.test(draft.trim());

  function submit(e: FormEvent) {
    e.preventDefault();
    if (bad) return;
    onApply(Number(draft.trim()), limit);
  }

  return (
    <form role="search" aria-label="Place in the mailbox" className="mb-4 flex flex-wrap items-end gap-3" onSubmit={submit}>
      <div className="flex w-44 flex-col gap-1.5">
        <Label htmlFor={ids.since}>After seq</Label>
        <Input id={ids.since} inputMode="numeric" value={draft} aria-invalid={bad} onChange={(e) => setDraft(e.target.value)} />
      </div>
      <div className="flex w-36 flex-col gap-1.5">
        <Label htmlFor={ids.limit}>Per page</Label>
        <Select id={ids.limit} value={String(limit)} onChange={(e) => onApply(since, Number(e.target.value))}>
          {[...new Set([...PAGE_SIZES, limit])].sort((a, b) => a - b).map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </Select>
      </div>
      <Button type="submit">Show</Button>
      {bad && (
        <p role="alert" className="w-full text-sm text-destructive">
          After seq must be a whole number: 0 for the start of the mailbox.
        </p>
      )}
    </form>
  );
}

function EntriesTable({ entries, open, onToggle, now }: { entries: Entry[]; open: Set<number>; onToggle: (seq: number) => void; now: number }) {
  const withAttempts = entries.some((e) => entryAttempts(e) !== null);
  const headers = ["Seq", "Message", "Type", "From", "State", ...(withAttempts ? ["Attempts"] : []), "Sent", "Content"];
  return (
    <div tabIndex={0} role="region" aria-label="Mailbox entries" className="overflow-x-auto rounded-lg border border-border">
      <table className="w-full min-w-[56rem] text-sm">
        <caption className="sr-only">Mailbox entries, oldest first</caption>
        <thead className="bg-muted text-left">
          <tr>
            {headers.map((h) => (
              <th key={h} scope="col" className="px-3 py-2 font-medium">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {entries.map((entry) => {
            const m = entry.message;
            const sent = unixToIso(m.timestamp);
            const expanded = open.has(entry.seq);
            const detailId = `entry-${entry.seq}-content`;
            return (
              <Fragment key={entry.seq}>
                <tr className="border-t border-border align-top" data-seq={entry.seq}>
                  <th scope="row" className="px-3 py-2 text-left font-mono text-xs font-medium">
                    {entry.seq}
                  </th>
                  <td className="px-3 py-2 font-mono text-xs">
                    <Link className="text-primary underline" to={`/messages/${encodeURIComponent(m.message_id)}`}>
                      {m.message_id}
                    </Link>
                  </td>
                  <td className="px-3 py-2">
                    {m.message_type}
                    {m.topic && <span className="block font-mono text-xs text-muted-foreground">topic {m.topic}</span>}
                  </td>
                  <td className="px-3 py-2 font-mono text-xs">
                    {m.from_sandbox} / {m.from_agent}
                  </td>
                  <td className="px-3 py-2">
                    <Badge variant={ENTRY_STATE_VARIANT[entry.state] ?? "default"}>{entry.state}</Badge>
                  </td>
                  {withAttempts && <td className="px-3 py-2">{entryAttempts(entry) ?? "—"}</td>}
                  <td className="px-3 py-2 whitespace-nowrap">
                    {sent ? (
                      <time dateTime={sent} title={formatTime(sent)}>
                        {formatAgo(sent, now)}
                      </time>
                    ) : (
                      "—"
                    )}
                  </td>
                  <td className="px-3 py-2">
                    <Button
                      variant="ghost"
                      size="sm"
                      aria-expanded={expanded}
                      aria-controls={expanded ? detailId : undefined}
                      aria-label={`${expanded ? "Hide" : "Show"} content of seq ${entry.seq}`}
                      onClick={() => onToggle(entry.seq)}
                    >
                      {expanded ? <ChevronDown aria-hidden="true" /> : <ChevronRight aria-hidden="true" />}
                      {expanded ? "Hide" : "Show"}
                    </Button>
                  </td>
                </tr>
                {expanded && (
                  <tr id={detailId} className="bg-muted/40">
                    <td colSpan={headers.length} className="px-3 py-2">
                      <JsonBlock value={m.content} label={`Content of seq ${entry.seq}`} />
                      {Object.keys(m.metadata ?? {}).length > 0 && (
                        <details className="mt-2">
                          <summary className="cursor-pointer text-sm font-medium">Metadata</summary>
                          <JsonBlock value={m.metadata} label={`Metadata of seq ${entry.seq}`} className="mt-2" />
                        </details>
                      )}
                    </td>
                  </tr>
                )}
              </Fragment>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
