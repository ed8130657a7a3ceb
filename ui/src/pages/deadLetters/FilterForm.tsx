import { useEffect, useId, useState, type FormEvent } from "react";
import { Button } from "@/components/ui/button";
import { Input, Label, Select } from "@/components/ui/input";
import {
  DEAD_LETTER_REASONS,
  hasFilter,
  isoToLocalInput,
  localInputToIso,
  NO_DEAD_LETTER_FILTERS,
  type DeadLetterFilters,
} from "@/lib/deadLetters";
import { isIdentifier } from "@/lib/filters";

type Draft = { reason: string; sandbox_id: string; message_id: string; since: string; until: string };

function toDraft(filters: DeadLetterFilters): Draft {
  return {
    reason: filters.reason ?? "",
    sandbox_id: filters.sandbox_id ?? "",
    message_id: filters.message_id ?? "",
    since: isoToLocalInput(filters.since),
    until: isoToLocalInput(filters.until),
  };
}

/** The dead letters' filters: edited here, applied (to the URL) on submit. */
export function FilterForm({ filters, onApply }: { filters: DeadLetterFilters; onApply: (f: DeadLetterFilters) => void }) {
  const ids = { reason: useId(), sandbox: useId(), message: useId(), since: useId(), until: useId() };
  const [draft, setDraft] = useState(() => toDraft(filters));
  const key = JSON.stringify(filters);
  useEffect(() => {
    setDraft(toDraft(filters));
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
