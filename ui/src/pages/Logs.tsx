import { ArrowDown, Download, Pause, Play, RotateCcw } from "lucide-react";
import { memo, useEffect, useId, useLayoutEffect, useReducer, useRef, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import type { ApiError } from "@/api/errors";
import { useAuth } from "@/auth/auth";
import { ActionError } from "@/components/ActionError";
import { PageHeader } from "@/components/PageHeader";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { Label, Select } from "@/components/ui/input";
import { useBusEvents } from "@/lib/events";
import { isAtBottom } from "@/lib/follow";
import {
  applyTail,
  droppedCount,
  EMPTY_LOG,
  logFileName,
  logReducer,
  LogSocket,
  logsUrl,
  logText,
  MAX_LINES,
  parseTail,
  TAIL_CHOICES,
  type LogLine,
  type LogSocketState,
} from "@/lib/logs";
import { cn } from "@/lib/utils";

const STATE_EVENTS = ["sandbox.state_changed"] as const;

/** `/sandboxes/:sandboxId/logs`: a managed sandbox's container output, followed live. */
export function Logs() {
  const { sandboxId = "" } = useParams();
  const { token, signOut } = useAuth();
  const [searchParams, setSearchParams] = useSearchParams();
  const { tail, invalid } = parseTail(searchParams);
  const tailId = useId();
  const [view, dispatch] = useReducer(logReducer, EMPTY_LOG);
  const [socketState, setSocketState] = useState<LogSocketState>("connecting");
  const [ended, setEnded] = useState<string | null>(null);
  const [refused, setRefused] = useState<ApiError | null>(null);
  const [dropped, setDropped] = useState(false);
  // Bumped by "Follow again": a new socket, from `tail` lines back.
  const [attempt, setAttempt] = useState(0);
  // The container runs again (sandbox.state_changed) after the stream ended or was refused.
  const [runsAgain, setRunsAgain] = useState(false);
  const signOutRef = useRef(signOut);
  signOutRef.current = signOut;

  useEffect(() => {
    if (!token) return;
    dispatch({ type: "reset" });
    setEnded(null);
    setRefused(null);
    setDropped(false);
    setRunsAgain(false);
    const socket = new LogSocket({
      url: logsUrl(window.location, sandboxId, tail),
      token,
      onState: setSocketState,
      onLines: (lines) => dispatch({ type: "lines", lines }),
      onEnd: setEnded,
      onRefused: setRefused,
      onDropped: () => setDropped(true),
      onUnauthorized: () => signOutRef.current("expired"),
    });
    socket.start();
    return () => socket.stop();
  }, [sandboxId, tail, token, attempt]);

  const streamOver = socketState === "ended" || socketState === "refused" || socketState === "dropped";
  useBusEvents(STATE_EVENTS, (event) => {
    if (event && event.data.sandbox_id === sandboxId && event.data.state === "running" && streamOver) setRunsAgain(true);
  });

  const scroller = useRef<HTMLDivElement>(null);
  // Following: keep the newest line in view. Paused: nothing in the box changes, so nothing moves.
  useLayoutEffect(() => {
    const box = scroller.current;
    if (box && !view.paused) box.scrollTop = box.scrollHeight;
  }, [view.lines, view.paused]);

  function followAgain() {
    setAttempt((n) => n + 1);
  }

  function download() {
    const blob = new Blob([logText(view)], { type: "text/plain;charset=utf-8" });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = logFileName(sandboxId, new Date());
    a.style.display = "none";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  const held = view.pending.length;
  const lost = droppedCount(view);
  const kept = view.lines.length + held;
  const sandboxPath = `/sandboxes/${encodeURIComponent(sandboxId)}`;

  return (
    <>
      <PageHeader
        title={`Logs of ${sandboxId}`}
        description={
          <>
            <Link className="text-primary underline" to={sandboxPath}>
              Sandbox {sandboxId}
            </Link>
            {" · "}The container's output (stdout and stderr), live.
          </>
        }
      />
      {invalid && (
        <Alert variant="warning" className="mb-4" role="status">
          The address had an invalid tail (a whole number up to {MAX_LINES}); it is ignored.
        </Alert>
      )}
      <div className="mb-3 flex flex-wrap items-end gap-3">
        <div className="flex w-48 flex-col gap-1.5">
          <Label htmlFor={tailId}>Start with the last</Label>
          <Select id={tailId} value={String(tail)} onChange={(e) => setSearchParams(applyTail(Number(e.target.value), searchParams), { replace: true })}>
            {[...new Set([...TAIL_CHOICES, tail])]
              .sort((a, b) => a - b)
              .map((n) => (
                <option key={n} value={n}>
                  {n} lines
                </option>
              ))}
          </Select>
        </div>
        {/* One button whose label changes, so it keeps the focus. */}
        <Button
          variant={view.paused ? "default" : "outline"}
          onClick={() => dispatch({ type: view.paused ? "resume" : "pause" })}
          disabled={streamOver && !view.paused}
        >
          {view.paused ? <Play aria-hidden="true" /> : <Pause aria-hidden="true" />}
          {view.paused ? "Follow" : "Pause"}
        </Button>
        <Button variant="outline" onClick={download} disabled={kept === 0}>
          <Download aria-hidden="true" />
          Download
        </Button>
        <p className="self-center text-sm text-muted-foreground" data-testid="log-follow-state" data-paused={view.paused ? "true" : "false"}>
          <span role="status">{describeState(socketState, view.paused)}</span>
          {view.paused && (
            <span>
              {" "}— {held} new line{held === 1 ? "" : "s"} held
            </span>
          )}
        </p>
      </div>

      <div aria-live="polite">
        {ended !== null && (
          <Alert className="mb-3" role="status" data-testid="log-ended">
            <span>
              The stream ended: {ended}.{" "}
              {runsAgain ? "The container runs again." : ""}
            </span>
            <Button size="sm" variant={runsAgain ? "default" : "outline"} className="ml-auto" onClick={followAgain}>
              <RotateCcw aria-hidden="true" />
              Follow again
            </Button>
          </Alert>
        )}
        {dropped && (
          <Alert variant="warning" className="mb-3" role="status">
            <span>The connection to the bus was lost; lines after this point were not received.</span>
            <Button size="sm" variant="outline" className="ml-auto" onClick={followAgain}>
              <RotateCcw aria-hidden="true" />
              Follow again
            </Button>
          </Alert>
        )}
      </div>
      {refused && (
        <div className="mb-3 flex flex-col gap-2">
          <ActionError error={refused} />
          <div className="flex flex-wrap items-center gap-2 text-sm">
            {refused.code === "no_container" && (
              <span className="text-muted-foreground">
                {runsAgain ? "The container runs now." : "The logs appear once the bus has created its container."}
              </span>
            )}
            <Button size="sm" variant={runsAgain ? "default" : "outline"} onClick={followAgain}>
              <RotateCcw aria-hidden="true" />
              Try again
            </Button>
          </div>
        </div>
      )}
      {lost > 0 && (
        <p className="mb-2 text-sm text-muted-foreground" role="status" data-testid="log-dropped">
          {lost} earlier line{lost === 1 ? " was" : "s were"} dropped: this view keeps the last {MAX_LINES} (Download saves
          those).
        </p>
      )}

      <div className="relative">
        <div
          ref={scroller}
          role="log"
          aria-label="Container output"
          tabIndex={0}
          data-testid="log-view"
          className="h-[60vh] min-h-64 overflow-auto rounded-md border border-border bg-muted p-3 font-mono text-xs leading-relaxed focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-ring"
          onScroll={(e) => dispatch({ type: "scroll", atNewest: isAtBottom(e.currentTarget) })}
        >
          {view.lines.length === 0 ? (
            <p className="font-sans text-sm text-muted-foreground">
              {socketState === "connecting"
                ? "Connecting…"
                : socketState === "following"
                  ? "No output yet: new lines appear here as the container writes them."
                  : "No output."}
            </p>
          ) : (
            <Lines lines={view.lines} />
          )}
        </div>
        {view.paused && held > 0 && (
          <Button size="sm" className="absolute bottom-3 left-1/2 -translate-x-1/2 shadow-md" onClick={() => dispatch({ type: "resume" })} data-testid="log-resume">
            <ArrowDown aria-hidden="true" />
            {held} new line{held === 1 ? "" : "s"} — resume
          </Button>
        )}
      </div>
      <p className="mt-2 text-xs text-muted-foreground">
        Scroll up to read: the view holds still (new lines are counted, not shown) until you scroll back to the end or
        press Follow. {kept} line{kept === 1 ? "" : "s"} kept.
      </p>
    </>
  );
}

function describeState(state: LogSocketState, paused: boolean): string {
  switch (state) {
    case "connecting":
      return "Connecting…";
    case "following":
      return paused ? "Paused" : "Following the container's output.";
    case "ended":
      return "The stream ended.";
    case "refused":
      return "The bus refused to show these logs.";
    case "dropped":
      return "Disconnected.";
    case "closed":
      return "Closed.";
  }
}

/** The lines, one element each (memoised: a batch re-renders only the list, not each line). */
const Lines = memo(function Lines({ lines }: { lines: LogLine[] }) {
  return (
    <>
      {lines.map((line) => (
        <Line key={line.n} text={line.text} />
      ))}
    </>
  );
});

const Line = memo(function Line({ text }: { text: string }) {
  return <div className={cn("whitespace-pre-wrap break-all", text === "" && "h-[1lh]")}>{text}</div>;
});
