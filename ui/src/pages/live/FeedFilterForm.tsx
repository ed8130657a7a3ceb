import { useEffect, useId, useState, type FormEvent } from "react";
import { Button } from "@/components/ui/button";
import { Input, Label, Select } from "@/components/ui/input";
import { applyFeedFilters, MESSAGE_TYPES, NO_FEED_FILTERS, parseFeedFilters, type FeedFilters } from "@/lib/live";

/** Sandbox and type apply as they change; topic (a pattern) and correlation id on submit. */
export function FeedFilterForm({ filters, onApply, sandboxIds }: { filters: FeedFilters; onApply: (f: FeedFilters) => void; sandboxIds: string[] }) {
  const ids = { sandbox: useId(), type: useId(), topic: useId(), correlation: useId() };
  const [topic, setTopic] = useState(filters.topic ?? "");
  const [correlation, setCorrelation] = useState(filters.correlation ?? "");
  useEffect(() => setTopic(filters.topic ?? ""), [filters.topic]);
  useEffect(() => setCorrelation(filters.correlation ?? ""), [filters.correlation]);
  const options = [...new Set([...sandboxIds, ...(filters.sandbox ? [filters.sandbox] : [])])].sort((a, b) => a.localeCompare(b));
  const any = filters.sandbox !== null || filters.type !== null || filters.topic !== null || filters.correlation !== null;

  function submit(e: FormEvent) {
    e.preventDefault();
    const parsed = parseFeedFilters(applyFeedFilters({ ...filters, topic: topic.trim() || null, correlation: correlation.trim() || null }));
    onApply({ sandbox: parsed.sandbox, type: parsed.type, topic: parsed.topic, correlation: parsed.correlation });
  }

  return (
    <form role="search" aria-label="Filter the feed" className="grid gap-3 sm:grid-cols-2" onSubmit={submit}>
      <div className="flex flex-col gap-1.5">
        <Label htmlFor={ids.sandbox}>Sandbox</Label>
        <Select id={ids.sandbox} value={filters.sandbox ?? ""} onChange={(e) => onApply({ ...filters, sandbox: e.target.value || null })}>
          <option value="">Any sandbox</option>
          {options.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </Select>
      </div>
      <div className="flex flex-col gap-1.5">
        <Label htmlFor={ids.type}>Type</Label>
        <Select id={ids.type} value={filters.type ?? ""} onChange={(e) => onApply({ ...filters, type: (e.target.value || null) as FeedFilters["type"] })}>
          <option value="">Any type</option>
          {MESSAGE_TYPES.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </Select>
      </div>
      <div className="flex flex-col gap-1.5">
        <Label htmlFor={ids.topic}>Topic</Label>
        <Input id={ids.topic} value={topic} onChange={(e) => setTopic(e.target.value)} aria-describedby={`${ids.topic}-hint`} />
        <span id={`${ids.topic}-hint`} className="text-xs text-muted-foreground">
          e.g. team.# or team.*
        </span>
      </div>
      <div className="flex flex-col gap-1.5">
        <Label htmlFor={ids.correlation}>Correlation id</Label>
        <Input id={ids.correlation} value={correlation} onChange={(e) => setCorrelation(e.target.value)} />
      </div>
      <div className="col-span-full flex gap-2">
        <Button type="submit" size="sm">
          Apply filters
        </Button>
        {any && (
          <Button size="sm" variant="ghost" onClick={() => onApply(NO_FEED_FILTERS)}>
            Clear filters
          </Button>
        )}
      </div>
    </form>
  );
}
