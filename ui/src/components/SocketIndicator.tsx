import { useSocketStatus } from "@/lib/events";
import { cn } from "@/lib/utils";

const TEXT = {
  connecting: "Live updates: connecting…",
  open: "Live updates on",
  reconnecting: "Socket reconnecting…",
  unauthorized: "Live updates refused",
  forbidden: "Live updates not allowed for this key",
  closed: "Live updates off",
} as const;

/** The /ws/events socket's state, in the banner (announced politely when it changes). */
export function SocketIndicator() {
  const { state, retryInMs } = useSocketStatus();
  const dot =
    state === "open"
      ? "bg-success"
      : state === "reconnecting" || state === "connecting"
        ? "bg-warning animate-pulse"
        : "bg-destructive";
  const retry = state === "reconnecting" && retryInMs !== null ? ` (retry in ${Math.ceil(retryInMs / 1000)} s)` : "";
  return (
    <span role="status" aria-live="polite" className="flex items-center gap-2 text-xs text-muted-foreground">
      <span aria-hidden="true" className={cn("inline-block size-2 rounded-full", dot)} />
      <span data-testid="socket-state" data-state={state}>
        {TEXT[state]}
        {retry}
      </span>
    </span>
  );
}
