import { Lock, PenLine, RefreshCw, SlidersHorizontal } from "lucide-react";
import { useEffect, useId, useRef, useState } from "react";
import { useSearchParams } from "react-router";
import type { GetResult } from "@/api/client";
import { useAuth } from "@/auth/auth";
import { ActionError, isForbidden } from "@/components/ActionError";
import { EmptyState } from "@/components/EmptyState";
import { PageHeader } from "@/components/PageHeader";
import { Readiness } from "@/components/Readiness";
import { Loading, QueryError } from "@/components/QueryStatus";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input, Label } from "@/components/ui/input";
import {
  applyConfigFilters,
  filterSettings,
  formatSettingValue,
  NO_CONFIG_FILTERS,
  parseConfigFilters,
  type ConfigFilters,
  type Setting,
} from "@/lib/configuration";
import { useBusEvents } from "@/lib/events";
import { useApi, useDebounced, type ApiState } from "@/lib/useApi";
import { cn } from "@/lib/utils";

const EDITION_EVENTS = ["sandbox.registered", "sandbox.unregistered"] as const;

const BROKERS: Record<string, string> = {
  memory: "in-process queues: one bus process (collab-bus up), no separate broker",
  redis: "Redis",
  rabbitmq: "RabbitMQ",
  nats: "NATS JetStream",
};

/** A 403 names the missing permission; other failures as for any fetch. */
function LoadError({ error, stale }: { error: unknown; stale: boolean }) {
  if (isForbidden(error)) return <ActionError error={error} className="mt-2" />;
  return <QueryError error={error} stale={stale} />;
}

export function Configuration() {
  const { api } = useAuth();
  const [searchParams, setSearchParams] = useSearchParams();
  const filters = parseConfigFilters(searchParams);
  const config = useApi((signal) => api.get("/api/v1/configuration", { signal }), [api]);
  const edition = useApi((signal) => api.get("/api/v1/edition", { signal }), [api], 60_000);
  const ready = useApi((signal) => api.get("/readyz", { signal }), [api], 30_000);
  const refetch = useDebounced(edition.reload, 1000);
  useBusEvents(EDITION_EVENTS, refetch);
  const loading = config.loading || edition.loading || ready.loading;

  function reload() {
    config.reload();
    edition.reload();
    ready.reload();
  }

  return (
    <>
      <PageHeader
        title="Configuration"
        description="How the bus is set up, read-only: each setting comes from an environment variable when the bus starts. With several API nodes, this is the one that answered."
        actions={
          <Button variant="outline" size="sm" onClick={reload} aria-busy={loading}>
            <RefreshCw aria-hidden="true" className={loading ? "animate-spin" : undefined} />
            Refresh
          </Button>
        }
      />
      <div className="mb-6 grid gap-4 lg:grid-cols-2">
        <EditionCard q={edition} />
        <BrokerCard broker={config.data?.broker} ready={ready} configError={config.error} />
      </div>
      <SettingsSection
        settings={config.data?.settings}
        error={config.error}
        filters={filters}
        onFilters={(f) => setSearchParams(applyConfigFilters(f, searchParams), { replace: true })}
      />
    </>
  );
}

function EditionCard({ q }: { q: ApiState<GetResult<"/api/v1/edition">> }) {
  const e = q.data;
  const limit = e?.limits.managed_sandboxes ?? null;
  return (
    <Card aria-labelledby="card-edition">
      <CardHeader>
        <CardTitle id="card-edition">Edition</CardTitle>
        <CardDescription>What this bus may run: the edition sets how many managed sandboxes it starts at most.</CardDescription>
      </CardHeader>
      <CardContent>
        {e ? (
          <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-2 text-sm" data-testid="edition">
            <dt className="text-muted-foreground">Edition</dt>
            <dd className="font-medium capitalize">{e.edition}</dd>
            <dt className="text-muted-foreground">Managed sandboxes</dt>
            <dd>{e.managed_sandboxes.enabled ? "enabled" : "disabled (MANAGED_SANDBOXES is off)"}</dd>
            <dt className="text-muted-foreground">In use</dt>
            <dd className="tabular-nums">
              {limit === null
                ? `${e.managed_sandboxes.in_use} (no limit)`
                : `${e.managed_sandboxes.in_use} of ${limit}${e.managed_sandboxes.in_use >= limit ? " — the limit is reached" : ""}`}
            </dd>
          </dl>
        ) : (
          !q.error && <Loading what="the edition" />
        )}
        <LoadError error={q.error} stale={e !== undefined} />
      </CardContent>
    </Card>
  );
}

function BrokerCard({
  broker,
  ready,
  configError,
}: {
  broker: string | undefined;
  ready: ApiState<GetResult<"/readyz">>;
  configError: unknown;
}) {
  return (
    <Card aria-labelledby="card-broker">
      <CardHeader>
        <CardTitle id="card-broker">Broker</CardTitle>
        <CardDescription>Where the bus queues deliveries, and whether it and the database answer now.</CardDescription>
      </CardHeader>
      <CardContent className="flex flex-col gap-3">
        {broker ? (
          <p className="text-sm" data-testid="broker">
            <span className="font-medium">{broker}</span>
            {BROKERS[broker] && <span className="text-muted-foreground"> — {BROKERS[broker]}</span>}
          </p>
        ) : (
          !configError && <Loading what="the broker" />
        )}
        <Readiness ready={ready} />
      </CardContent>
    </Card>
  );
}

function SettingsSection({
  settings,
  error,
  filters,
  onFilters,
}: {
  settings: Setting[] | undefined;
  error: unknown;
  filters: ConfigFilters;
  onFilters: (f: ConfigFilters) => void;
}) {
  const shown = settings ? filterSettings(settings, filters) : [];
  const changed = settings?.filter((s) => s.changed).length ?? 0;
  const filtered = filters.q !== null || filters.changedOnly;
  return (
    <section aria-labelledby="settings-title">
      <h2 id="settings-title" className="mb-2 text-lg font-semibold">
        Settings
      </h2>
      <SettingsFilterForm filters={filters} onApply={onFilters} />
      <LoadError error={error} stale={settings !== undefined} />
      {settings === undefined ? (
        !error && <Loading what="settings" />
      ) : (
        <>
          <p role="status" className="mb-2 text-sm text-muted-foreground" data-testid="settings-count">
            {filtered ? `${shown.length} of ${settings.length} settings shown` : `${settings.length} settings`}; {changed} changed from
            the default.
          </p>
          {shown.length === 0 ? (
            <EmptyState icon={SlidersHorizontal} title="No setting matches these filters">
              <Button variant="outline" size="sm" className="mt-2" onClick={() => onFilters(NO_CONFIG_FILTERS)}>
                Clear filters
              </Button>
            </EmptyState>
          ) : (
            <div tabIndex={0} role="region" aria-label="Settings table" className="overflow-x-auto rounded-lg border border-border">
              <table className="w-full min-w-[40rem] text-sm">
                <caption className="sr-only">Settings{filtered ? " (filtered)" : ""}, by environment variable</caption>
                <thead className="bg-muted text-left">
                  <tr>
                    {["Setting", "Value", "Default"].map((h) => (
                      <th key={h} scope="col" className="px-3 py-2 font-medium">
                        {h}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {shown.map((s) => (
                    <tr
                      key={s.name}
                      className={cn("border-t border-border align-top", s.changed && "bg-warning/5")}
                      data-setting={s.name}
                      data-changed={s.changed ? "true" : "false"}
                    >
                      <th scope="row" className={cn("px-3 py-2 text-left font-medium", s.changed && "border-l-4 border-l-warning")}>
                        <span className="font-mono text-xs break-all">{s.name}</span>
                        {s.changed && (
                          <Badge variant="warning" className="ml-2 align-middle">
                            <PenLine aria-hidden="true" className="size-3" />
                            changed
                          </Badge>
                        )}
                      </th>
                      <td className="px-3 py-2">
                        <SettingValue value={s.value} secret={s.secret} />
                      </td>
                      <td className="px-3 py-2 text-muted-foreground">
                        <SettingValue value={s.default} secret={s.secret} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </section>
  );
}

function SettingValue({ value, secret }: { value: unknown; secret: boolean }) {
  const text = formatSettingValue(value, secret);
  if (secret) {
    return (
      <span className="inline-flex items-center gap-1">
        <Lock aria-hidden="true" className="size-3.5" />
        {text}
      </span>
    );
  }
  if (value === null || value === undefined || value === "") return <span className="italic">{text}</span>;
  return <span className="font-mono text-xs break-all">{text}</span>;
}

function SettingsFilterForm({ filters, onApply }: { filters: ConfigFilters; onApply: (f: ConfigFilters) => void }) {
  const qId = useId();
  const changedId = useId();
  const [text, setText] = useState(filters.q ?? "");
  const textRef = useRef(text);
  textRef.current = text;
  // The URL changed by other means (back, a link): show its words. Typing itself leaves the box as it is.
  useEffect(() => {
    if ((textRef.current.trim() || null) !== filters.q) setText(filters.q ?? "");
  }, [filters.q]);

  return (
    <form role="search" aria-label="Filter settings" className="mb-3 flex flex-wrap items-end gap-4" onSubmit={(e) => e.preventDefault()}>
      <div className="flex w-72 flex-col gap-1.5">
        <Label htmlFor={qId}>Filter</Label>
        <Input
          id={qId}
          type="search"
          value={text}
          aria-describedby={`${qId}-hint`}
          onChange={(e) => {
            setText(e.target.value);
            onApply({ ...filters, q: e.target.value.trim() || null });
          }}
        />
        <span id={`${qId}-hint`} className="text-xs text-muted-foreground">
          Words in the name or the value, e.g. timeout
        </span>
      </div>
      <div className="flex items-center gap-2 pb-6">
        <input
          id={changedId}
          type="checkbox"
          className="size-4"
          checked={filters.changedOnly}
          onChange={(e) => onApply({ ...filters, changedOnly: e.target.checked })}
        />
        <Label htmlFor={changedId}>Changed only</Label>
      </div>
    </form>
  );
}
