import { Boxes, Plus, RefreshCw } from "lucide-react";
import { useId, useMemo, useState } from "react";
import { useSearchParams } from "react-router";
import { useAuth } from "@/auth/auth";
import { EmptyState } from "@/components/EmptyState";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { useBusEvents } from "@/lib/events";
import { applySandboxFilters, matchesFilters, parseSandboxFilters, type SandboxFilters } from "@/lib/filters";
import { SANDBOX_PAGE_EVENTS } from "@/lib/sandboxes";
import { useApi, useDebounced, useNow } from "@/lib/useApi";
import { CreateSandboxDialog } from "./sandboxes/CreateSandboxDialog";
import { SandboxFilterForm } from "./sandboxes/SandboxFilterForm";
import { SandboxTable } from "./sandboxes/SandboxTable";


export function Sandboxes() {
  const { api } = useAuth();
  const [searchParams, setSearchParams] = useSearchParams();
  const filters = parseSandboxFilters(searchParams);
  const now = useNow(5000);
  const workspaceId = useId();
  const statusId = useId();
  const [creating, setCreating] = useState(false);
  // Whether this bus runs containers at all (MANAGED_SANDBOXES), and its edition's limit.
  const edition = useApi((signal) => api.get("/api/v1/edition", { signal }), [api]);
  const managedOff = edition.data?.managed_sandboxes.enabled === false;

  // The whole list (the API has no paging for it), filtered here so the workspace choices stay complete.
  const q = useApi(
    (signal) => api.get("/api/v1/sandboxes", { query: { include_unregistered: true }, signal }),
    [api],
    30_000,
  );
  const refetch = useDebounced(q.reload, 500);
  useBusEvents(SANDBOX_PAGE_EVENTS, refetch);

  const all = q.data?.sandboxes;
  const workspaces = useMemo(() => {
    const set = new Set((all ?? []).map((s) => s.workspace));
    if (filters.workspace) set.add(filters.workspace);
    return [...set].sort((a, b) => a.localeCompare(b));
  }, [all, filters.workspace]);
  const shown = useMemo(
    () =>
      (all ?? [])
        .filter((s) => matchesFilters(s, filters))
        .sort((a, b) => a.workspace.localeCompare(b.workspace) || a.sandbox_id.localeCompare(b.sandbox_id)),
    [all, filters.workspace, filters.status],
  );

  function setFilters(next: SandboxFilters) {
    setSearchParams(applySandboxFilters(next, searchParams), { replace: true });
  }

  const filtered = filters.workspace !== null || filters.status !== null;

  return (
    <>
      <PageHeader
        title="Sandboxes"
        description="Every sandbox the bus knows, updated live as they register, connect and change state. Open one to start, stop or delete it."
        actions={
          <>
            <Button variant="outline" size="sm" onClick={q.reload} aria-busy={q.loading}>
              <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
              Refresh
            </Button>
            <Button
              size="sm"
              onClick={() => setCreating(true)}
              disabled={managedOff}
              aria-describedby={managedOff ? `${workspaceId}-managed-off` : undefined}
            >
              <Plus aria-hidden="true" />
              Create sandbox
            </Button>
          </>
        }
      />
      {managedOff && (
        <p id={`${workspaceId}-managed-off`} className="mb-4 text-sm text-muted-foreground">
          This bus runs no containers (managed sandboxes are off: start it with <code>MANAGED_SANDBOXES=true</code>), so
          sandboxes cannot be created here; agents register their own.
        </p>
      )}
      {creating && (
        <CreateSandboxDialog
          workspace={filters.workspace}
          edition={edition.data}
          onClose={() => setCreating(false)}
        />
      )}
      <SandboxFilterForm
        ids={{ workspace: workspaceId, status: statusId }}
        filters={filters}
        workspaces={workspaces}
        onFilters={setFilters}
      />
      {filters.invalid.length > 0 && (
        <Alert variant="warning" className="mb-4" role="status">
          The address had an invalid {filters.invalid.join(" and ")} filter; it is ignored.
        </Alert>
      )}

      <QueryError error={q.error} stale={all !== undefined} />

      {all === undefined ? (
        !q.error && <Loading what="sandboxes" />
      ) : shown.length === 0 ? (
        <NoSandboxes filtered={filtered} total={all.length} />
      ) : (
        <>
          <p className="mb-2 text-sm text-muted-foreground" aria-live="polite">
            Showing {shown.length} of {all.length} sandbox{all.length === 1 ? "" : "es"}.
          </p>
          <SandboxTable sandboxes={shown} filtered={filtered} now={now} />
        </>
      )}
    </>
  );
}

/** Nothing to list: no sandbox at all, or none that matches the filters. */
function NoSandboxes({ filtered, total }: { filtered: boolean; total: number }) {
  return (
    <EmptyState icon={Boxes} title={filtered ? "No sandbox matches these filters" : "No sandboxes yet"}>
      {filtered ? (
        <p>
          {total} sandbox{total === 1 ? "" : "es"} in all. Change or clear the filters to see them.
        </p>
      ) : (
        <p>
          A sandbox appears here when an agent registers it (<code>POST /api/v1/sandboxes/register</code>, which
          the agent SDK does on start), or when you create a managed one with <strong>Create sandbox</strong>. This
          list updates by itself.
        </p>
      )}
    </EmptyState>
  );
}
