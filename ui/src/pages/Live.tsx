import { useSearchParams } from "react-router";
import { useAuth } from "@/auth/auth";
import { PageHeader } from "@/components/PageHeader";
import { QueryError } from "@/components/QueryStatus";
import { useBusEvents, useEventsHub } from "@/lib/events";
import { applyFeedFilters, parseFeedFilters, type FeedFilters } from "@/lib/live";
import { useApi, useDebounced } from "@/lib/useApi";
import { Feed } from "./live/Feed";
import { Graph } from "./live/Graph";
import { useFadeClock, useLiveStream } from "./live/useLiveStream";

const SANDBOX_EVENTS = ["sandbox.registered", "sandbox.unregistered", "sandbox.online", "sandbox.offline", "sandbox.connected", "sandbox.disconnected"] as const;

/** `/live`: the collaboration graph and the message feed, from the events socket. */
export function Live() {
  const { api } = useAuth();
  const hub = useEventsHub();
  const [searchParams, setSearchParams] = useSearchParams();
  const { invalid, ...filters } = parseFeedFilters(searchParams);

  const sandboxes = useApi((signal) => api.get("/api/v1/sandboxes", { signal }), [api], 60_000);
  const refetch = useDebounced(sandboxes.reload, 500);
  useBusEvents(SANDBOX_EVENTS, refetch);

  const { edges, feed, dispatch } = useLiveStream(hub);
  // Redraw while an edge is fading.
  const now = useFadeClock(edges);

  function setFilters(next: FeedFilters) {
    setSearchParams(applyFeedFilters(next, searchParams), { replace: true });
  }

  const ids = (sandboxes.data?.sandboxes ?? []).map((s) => s.sandbox_id);
  const statuses = new Map((sandboxes.data?.sandboxes ?? []).map((s) => [s.sandbox_id, s.status]));

  return (
    <>
      <PageHeader title="Live" description="Messages as they flow between sandboxes, from the bus's event stream." />
      <QueryError error={sandboxes.error} stale={sandboxes.data !== undefined} />
      <div className="grid gap-4 xl:grid-cols-2">
        <Graph ids={ids} statuses={statuses} edges={edges} now={now} />
        <Feed feed={feed} dispatch={dispatch} filters={filters} invalid={invalid} onFilters={setFilters} sandboxIds={ids} />
      </div>
    </>
  );
}
