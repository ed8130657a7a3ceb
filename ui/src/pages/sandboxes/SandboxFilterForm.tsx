import { Button } from "@/components/ui/button";
import { Label, Select } from "@/components/ui/input";
import { parseSandboxFilters, SANDBOX_STATUSES, type SandboxFilters } from "@/lib/filters";

/** Workspace and status filters, applied as they change. `ids` label the two selects. */
export function SandboxFilterForm({
  ids,
  filters,
  workspaces,
  onFilters,
}: {
  ids: { workspace: string; status: string };
  filters: SandboxFilters;
  workspaces: string[];
  onFilters: (next: SandboxFilters) => void;
}) {
  const filtered = filters.workspace !== null || filters.status !== null;
  return (
    <form
      role="search"
      aria-label="Filter sandboxes"
      className="mb-4 flex flex-wrap items-end gap-4"
      onSubmit={(e) => e.preventDefault()}
    >
      <div className="flex w-56 flex-col gap-1.5">
        <Label htmlFor={ids.workspace}>Workspace</Label>
        <Select
          id={ids.workspace}
          value={filters.workspace ?? ""}
          onChange={(e) => onFilters({ ...filters, workspace: e.target.value || null })}
        >
          <option value="">All workspaces</option>
          {workspaces.map((w) => (
            <option key={w} value={w}>
              {w}
            </option>
          ))}
        </Select>
      </div>
      <div className="flex w-44 flex-col gap-1.5">
        <Label htmlFor={ids.status}>Status</Label>
        <Select
          id={ids.status}
          value={filters.status ?? ""}
          onChange={(e) =>
            onFilters({ ...filters, status: parseSandboxFilters(`status=${e.target.value}`).status })
          }
        >
          <option value="">Any status</option>
          {SANDBOX_STATUSES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </Select>
      </div>
      {filtered && (
        <Button variant="ghost" size="sm" onClick={() => onFilters({ workspace: null, status: null })}>
          Clear filters
        </Button>
      )}
    </form>
  );
}
