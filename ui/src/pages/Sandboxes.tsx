import { Boxes, RefreshCw } from "lucide-react";
import { useId, useMemo } from "react";
import { useSearchParams } from "react-router";
import type { Schemas } from "@/api/client";
import { useAuth } from "@/auth/auth";
import { EmptyState } from "@/components/EmptyState";
import { PageHeader } from "@/components/PageHeader";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Alert } from "@/components/ui/alert";
import { Badge, type BadgeProps } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Label, Select } from "@/components/ui/input";
import { useBusEvents } from "@/lib/events";
import {
  applySandboxFilters,
  matchesFilters,
  parseSandboxFilters,
  SANDBOX_STATUSES,
  type SandboxFilters,
} from "@/lib/filters";
import { formatAgo, formatTime } from "@/lib/format";
import { useApi, useDebounced, useNow } from "@/lib/useApi";

type Sandbox = Schemas["Sandbox"];

/** Events after which the list is fetched again. */
const SANDBOX_EVENTS = [
  "sandbox.registered",
  "sandbox.unregistered",
  "sandbox.online",
  "sandbox.offline",
  "sandbox.connected",
  "sandbox.disconnected",
  "sandbox.state_changed",
  "sandbox.waking",
] as const;

const STATUS_VARIANT: Record<string, BadgeProps["variant"]> = {
  online: "success",
  offline: "warning",
  unregistered: "outline",
};

export function Sandboxes() {
  const { api } = useAuth();
  const [searchParams, setSearchParams] = useSearchParams();
  const filters = parseSandboxFilters(searchParams);
  const now = useNow(5000);
  const workspaceId = useId();
  const statusId = useId();

  // The whole list (the API has no paging for it), filtered here so the workspace choices stay complete.
  const q = useApi(
    (signal) => api.get("/api/v1/sandboxes", { query: { include_unregistered: true }, signal }),
    [api],
    30_000,
  );
  const refetch = useDebounced(q.reload, 500);
  useBusEvents(SANDBOX_EVENTS, refetch);

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
        description="Every sandbox the bus knows, updated live as they register, connect and change state."
        actions={
          <Button variant="outline" size="sm" onClick={q.reload} aria-busy={q.loading}>
            <RefreshCw aria-hidden="true" className={q.loading ? "animate-spin" : undefined} />
            Refresh
          </Button>
        }
      />
      <form
        role="search"
        aria-label="Filter sandboxes"
        className="mb-4 flex flex-wrap items-end gap-4"
        onSubmit={(e) => e.preventDefault()}
      >
        <div className="flex w-56 flex-col gap-1.5">
          <Label htmlFor={workspaceId}>Workspace</Label>
          <Select
            id={workspaceId}
            value={filters.workspace ?? ""}
            onChange={(e) => setFilters({ ...filters, workspace: e.target.value || null })}
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
          <Label htmlFor={statusId}>Status</Label>
          <Select
            id={statusId}
            value={filters.status ?? ""}
            onChange={(e) =>
              setFilters({ ...filters, status: parseSandboxFilters(`status=${e.target.value}`).status })
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
          <Button variant="ghost" size="sm" onClick={() => setFilters({ workspace: null, status: null })}>
            Clear filters
          </Button>
        )}
      </form>
      {filters.invalid.length > 0 && (
        <Alert variant="warning" className="mb-4" role="status">
          The address had an invalid {filters.invalid.join(" and ")} filter; it is ignored.
        </Alert>
      )}

      <QueryError error={q.error} stale={all !== undefined} />

      {all === undefined ? (
        !q.error && <Loading what="sandboxes" />
      ) : shown.length === 0 ? (
        <EmptyState icon={Boxes} title={filtered ? "No sandbox matches these filters" : "No sandboxes yet"}>
          {filtered ? (
            <p>
              {all.length} sandbox{all.length === 1 ? "" : "es"} in all. Change or clear the filters to see them.
            </p>
          ) : (
            <p>
              A sandbox appears here when an agent registers it (<code>POST /api/v1/sandboxes/register</code>, which
              the agent SDK does on start). This list updates by itself.
            </p>
          )}
        </EmptyState>
      ) : (
        <>
          <p className="mb-2 text-sm text-muted-foreground" aria-live="polite">
            Showing {shown.length} of {all.length} sandbox{all.length === 1 ? "" : "es"}.
          </p>
          {/* Focusable so keyboard users can scroll it sideways in a narrow window. */}
          <div tabIndex={0} role="region" aria-label="Sandboxes table" className="overflow-x-auto rounded-lg border border-border">
            <table className="w-full min-w-[56rem] text-sm">
              <caption className="sr-only">Sandboxes{filtered ? " (filtered)" : ""}</caption>
              <thead className="bg-muted text-left">
                <tr>
                  {["Sandbox", "Workspace", "Status", "Last heartbeat", "Agents and skills", "Container"].map((h) => (
                    <th key={h} scope="col" className="px-3 py-2 font-medium">
                      {h}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {shown.map((s) => (
                  <SandboxRow key={s.sandbox_id} sandbox={s} now={now} />
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </>
  );
}

function SandboxRow({ sandbox: s, now }: { sandbox: Sandbox; now: number }) {
  return (
    <tr className="border-t border-border align-top">
      <th scope="row" className="px-3 py-2 text-left font-mono text-xs font-medium">
        {s.sandbox_id}
      </th>
      <td className="px-3 py-2">{s.workspace}</td>
      <td className="px-3 py-2">
        <Badge variant={STATUS_VARIANT[s.status] ?? "default"}>{s.status}</Badge>
      </td>
      <td className="px-3 py-2 whitespace-nowrap">
        {s.last_heartbeat ? (
          <time dateTime={s.last_heartbeat} title={formatTime(s.last_heartbeat)}>
            {formatAgo(s.last_heartbeat, now)}
          </time>
        ) : (
          <span className="text-muted-foreground">never</span>
        )}
      </td>
      <td className="px-3 py-2">
        <Agents agents={s.agents} />
      </td>
      <td className="px-3 py-2">
        <Container sandbox={s} />
      </td>
    </tr>
  );
}

function Agents({ agents }: { agents: Sandbox["agents"] }) {
  if (agents.length === 0) return <span className="text-muted-foreground">none</span>;
  return (
    <ul className="flex flex-col gap-1">
      {agents.map((a) => (
        <li key={a.name} className="flex flex-wrap items-center gap-1">
          <span className="font-medium">{a.name}</span>
          {(a.skills ?? []).map((sk) => (
            <Badge key={sk.id} variant="outline" title={sk.description || sk.name || sk.id}>
              {sk.name || sk.id}
            </Badge>
          ))}
          {a.capabilities.map((c) => (
            <Badge key={`cap-${c}`} title="capability">
              {c}
            </Badge>
          ))}
        </li>
      ))}
    </ul>
  );
}

const STATE_VARIANT: Record<string, BadgeProps["variant"]> = {
  running: "success",
  error: "destructive",
  stopped: "outline",
  deleted: "outline",
};

function Container({ sandbox: s }: { sandbox: Sandbox }) {
  if (!s.managed) return <span className="text-muted-foreground">not managed</span>;
  const state = s.state ?? "unknown";
  return (
    <div className="flex flex-col gap-1">
      <span className="flex flex-wrap items-center gap-1">
        <Badge variant={STATE_VARIANT[state] ?? "warning"}>{state}</Badge>
        {s.desired_state && s.desired_state !== state && (
          <span className="text-xs text-muted-foreground">→ wanted {s.desired_state}</span>
        )}
      </span>
      {s.state_reason && <span className="text-xs text-destructive">{s.state_reason}</span>}
    </div>
  );
}
