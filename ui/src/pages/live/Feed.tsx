import { Pause, Play, Waypoints } from "lucide-react";
import { useRef } from "react";
import { Link } from "react-router";
import { Alert } from "@/components/ui/alert";
import { Badge, type BadgeProps } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { matchesFeed, type FeedAction, type FeedFilters, type FeedGap, type FeedMessage, type FeedState } from "@/lib/live";
import { FeedFilterForm } from "./FeedFilterForm";

const STATUS_VARIANT: Record<string, BadgeProps["variant"]> = { accepted: "outline", delivered: "success", dead: "destructive" };

/** The message feed, newest first: it holds new messages while paused or scrolled ("N new — resume"). */
export function Feed({
  feed,
  dispatch,
  filters,
  invalid,
  onFilters,
  sandboxIds,
}: {
  feed: FeedState;
  dispatch: (a: FeedAction) => void;
  filters: FeedFilters;
  invalid: string[];
  onFilters: (f: FeedFilters) => void;
  sandboxIds: string[];
}) {
  const scroller = useRef<HTMLDivElement>(null);
  const shown = feed.items.filter((i) => matchesFeed(i, filters));
  const held = feed.pending.filter((i) => matchesFeed(i, filters) && i.kind === "message").length;
  const filtered = filters.sandbox !== null || filters.type !== null || filters.topic !== null || filters.correlation !== null;

  function resume() {
    dispatch({ type: "resume" });
    if (scroller.current) scroller.current.scrollTop = 0;
  }

  return (
    <Card aria-labelledby="feed-title">
      <CardHeader>
        <CardTitle id="feed-title">Message feed</CardTitle>
        <CardDescription>Newest first. Scroll down to read: the feed holds new messages until you resume.</CardDescription>
      </CardHeader>
      <CardContent className="flex flex-col gap-3">
        <FeedFilterForm filters={filters} onApply={onFilters} sandboxIds={sandboxIds} />
        {invalid.length > 0 && (
          <Alert variant="warning" role="status">
            The address had an invalid {invalid.join(", ")} filter; it is ignored.
          </Alert>
        )}
        <div className="flex flex-wrap items-center gap-2">
          {feed.paused ? (
            <Button size="sm" onClick={resume} data-testid="feed-resume">
              <Play aria-hidden="true" />
              {held} new — resume
            </Button>
          ) : (
            <Button size="sm" variant="outline" onClick={() => dispatch({ type: "pause" })} data-testid="feed-pause">
              <Pause aria-hidden="true" />
              Pause feed
            </Button>
          )}
          <span role="status" className="text-sm text-muted-foreground" data-testid="feed-state" data-paused={feed.paused ? "true" : "false"}>
            {feed.paused ? `Paused: ${held} new message${held === 1 ? "" : "s"} held.` : "Following new messages."}
          </span>
          <Button size="sm" variant="ghost" className="ml-auto" onClick={() => dispatch({ type: "clear" })}>
            Clear feed
          </Button>
        </div>
        <div
          ref={scroller}
          tabIndex={0}
          role="region"
          aria-label="Message feed entries"
          data-testid="feed"
          className="h-[28rem] overflow-y-auto rounded-md border border-border"
          onScroll={(e) => dispatch({ type: "scroll", atNewest: e.currentTarget.scrollTop < 8 })}
        >
          {shown.length === 0 ? (
            <p className="p-4 text-sm text-muted-foreground">
              {feed.items.length > 0 && filtered
                ? `None of the ${feed.items.length} messages seen matches the filters.`
                : "Waiting for messages. They appear here as the bus accepts them (live only: earlier conversations are under Traces)."}
            </p>
          ) : (
            <ol className="divide-y divide-border">
              {shown.map((item) => (item.kind === "gap" ? <GapEntry key={item.id} item={item} /> : <MessageEntry key={item.id} item={item} />))}
            </ol>
          )}
        </div>
      </CardContent>
    </Card>
  );
}

/** Where the socket came back without the events it missed. */
function GapEntry({ item }: { item: FeedGap }) {
  return (
    <li className="bg-warning/10 px-3 py-2 text-xs" data-feed-gap>
      Reconnected at {new Date(item.at).toLocaleTimeString()}: messages since{" "}
      {item.since ? new Date(item.since).toLocaleTimeString() : "the last one seen"} may be missing here (the
      bus could not replay them: another API node answered, it restarted, or the page was away too long).
    </li>
  );
}

/** One message: time, type, sender → recipient, topic, status, correlation id, links to the message and its trace. */
function MessageEntry({ item }: { item: FeedMessage }) {
  return (
    <li className="flex flex-wrap items-center gap-x-2 gap-y-1 px-3 py-2 text-sm" data-message-id={item.id}>
      <time className="text-xs text-muted-foreground tabular-nums" dateTime={new Date(item.at).toISOString()}>
        {new Date(item.at).toLocaleTimeString()}
      </time>
      <Badge variant="default">{item.type ?? "message"}</Badge>
      <span className="font-mono text-xs">
        {item.from} → {item.to}
      </span>
      {item.topic && <Badge variant="outline">topic {item.topic}</Badge>}
      <Badge variant={STATUS_VARIANT[item.status] ?? "outline"}>
        {item.status}
        {item.status === "delivered" && item.to === "broadcast" ? ` to ${item.recipients.length}` : ""}
      </Badge>
      {item.correlationId && (
        <span className="max-w-full truncate text-xs text-muted-foreground" title={`correlation id ${item.correlationId}`}>
          correlation <span className="font-mono">{item.correlationId}</span>
        </span>
      )}
      <span className="ml-auto flex max-w-full min-w-0 items-center gap-3">
        <Link className="min-w-0 truncate font-mono text-xs text-primary underline" to={`/messages/${encodeURIComponent(item.id)}`}>
          {item.id}
        </Link>
        {item.traceId && (
          <Link
            className="inline-flex shrink-0 items-center gap-1 text-xs text-primary underline"
            to={`/traces/${encodeURIComponent(item.traceId)}`}
            title={`trace ${item.traceId}`}
            data-trace-id={item.traceId}
          >
            <Waypoints aria-hidden="true" className="size-3.5" />
            trace
          </Link>
        )}
      </span>
    </li>
  );
}
