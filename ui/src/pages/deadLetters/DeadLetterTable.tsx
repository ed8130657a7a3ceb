import { ArrowLeft, ArrowRight, Inbox, RotateCcw, Search } from "lucide-react";
import { Link } from "react-router";
import type { Schemas } from "@/api/client";
import { EmptyState } from "@/components/EmptyState";
import { TimeAgo } from "@/components/TimeAgo";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";

type DeadLetter = Schemas["DeadLetter"];

const COLUMNS = ["Id", "When", "Reason", "Sandbox", "Message", "Attempts", "Last error", "Actions"];

/** One page of dead letters, each with Inspect and Replay. */
export function DeadLetterTable({
  deadLetters,
  filtered,
  now,
  onInspect,
  onReplay,
}: {
  deadLetters: DeadLetter[];
  filtered: boolean;
  now: number;
  onInspect: (id: number) => void;
  onReplay: (dl: DeadLetter) => void;
}) {
  return (
    <div tabIndex={0} role="region" aria-label="Dead letters table" className="overflow-x-auto rounded-lg border border-border">
      <table className="w-full min-w-[60rem] text-sm">
        <caption className="sr-only">Dead letters{filtered ? " (filtered)" : ""}</caption>
        <thead className="bg-muted text-left">
          <tr>
            {COLUMNS.map((h) => (
              <th key={h} scope="col" className="px-3 py-2 font-medium">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {deadLetters.map((dl) => (
            <DeadLetterRow key={dl.id} dl={dl} now={now} onInspect={onInspect} onReplay={onReplay} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

function DeadLetterRow({
  dl,
  now,
  onInspect,
  onReplay,
}: {
  dl: DeadLetter;
  now: number;
  onInspect: (id: number) => void;
  onReplay: (dl: DeadLetter) => void;
}) {
  return (
    <tr className="border-t border-border align-top" data-dead-letter={dl.id}>
      <th scope="row" className="px-3 py-2 text-left font-mono text-xs font-medium">
        {dl.id}
      </th>
      <td className="px-3 py-2 whitespace-nowrap">
        <TimeAgo at={dl.created_at} now={now} />
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
          <Button variant="outline" size="sm" onClick={() => onInspect(dl.id)} aria-label={`Inspect dead letter ${dl.id}`}>
            <Search aria-hidden="true" />
            Inspect
          </Button>
          <Button variant="outline" size="sm" onClick={() => onReplay(dl)} aria-label={`Replay dead letter ${dl.id}`}>
            <RotateCcw aria-hidden="true" />
            Replay
          </Button>
        </div>
      </td>
    </tr>
  );
}

/** Previous and next page (the API pages forward only: the page keeps the cursors it came through). */
export function Pager({
  hasPrevious,
  hasNext,
  onPrevious,
  onNext,
}: {
  hasPrevious: boolean;
  hasNext: boolean;
  onPrevious: () => void;
  onNext: () => void;
}) {
  return (
    <nav aria-label="Pages" className="mt-3 flex items-center gap-2">
      <Button variant="outline" size="sm" disabled={!hasPrevious} onClick={onPrevious}>
        <ArrowLeft aria-hidden="true" />
        Previous page
      </Button>
      <Button variant="outline" size="sm" disabled={!hasNext} onClick={onNext}>
        Next page
        <ArrowRight aria-hidden="true" />
      </Button>
    </nav>
  );
}

/** The list is empty: there are none, none match the filters, or the page is past the last one. */
export function NoDeadLetters({ filtered, onFirstPage }: { filtered: boolean; onFirstPage: (() => void) | null }) {
  return (
    <EmptyState icon={Inbox} title={filtered ? "No dead letter matches these filters" : "No dead letters"}>
      {filtered ? (
        <p>Change or clear the filters to see others.</p>
      ) : (
        <p>
          Every message was delivered (or is still on its way). A message lands here when its recipient NACKs
          it, its ttl passes, it runs out of attempts or a runaway guard stops it.
        </p>
      )}
      {onFirstPage && (
        <p>
          <Button variant="link" onClick={onFirstPage}>
            Go to the first page
          </Button>
        </p>
      )}
    </EmptyState>
  );
}
