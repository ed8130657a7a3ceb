/**
 * A managed sandbox's container output, followed over `/ws/sandboxes/{sandbox_id}/logs?tail=N`
 * (docs/protocol.md §3.3a): the socket (credentials in the first frame, never the URL; frames `welcome`, `log`,
 * `end`, `error`; lines handed over in batches so a burst does not redraw the page per line), and the view's state:
 * the lines kept (at most MAX_LINES), those held while the reader looks back (follow.ts's rule), the download.
 */
import { buildUrl } from "@/api/client";
import { ApiError } from "@/api/errors";
import { followStep, type FollowAction } from "./follow";
import { openAuthenticated, type SocketLike } from "./eventSocket";

/** How many lines the view keeps; older ones are dropped (and the page says so). */
export const MAX_LINES = 5000;
export const TAIL_CHOICES = [100, 500, 1000, 5000] as const;
export const DEFAULT_TAIL = 100;

export const LOGS_SOCKET = "/ws/sandboxes/{sandbox_id}/logs";

/** `ws://host/ws/sandboxes/sb-1/logs?tail=100` (or `wss://`) on the page's own origin. */
export function logsUrl(location: { protocol: string; host: string }, sandboxId: string, tail: number): string {
  const path = buildUrl(LOGS_SOCKET, { sandbox_id: sandboxId }, { tail });
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
}

/** The `tail` of the URL: a whole number 0 … MAX_LINES (the bus takes more, but this view keeps no more). */
export function parseTail(search: URLSearchParams | string): { tail: number; invalid: boolean } {
  const params = typeof search === "string" ? new URLSearchParams(search) : search;
  const raw = params.get("tail");
  if (raw === null || raw.trim() === "") return { tail: DEFAULT_TAIL, invalid: false };
  if (!/^\d{1,6}$/.test(raw.trim())) return { tail: DEFAULT_TAIL, invalid: true };
  const n = Number(raw.trim());
  return n <= MAX_LINES ? { tail: n, invalid: false } : { tail: DEFAULT_TAIL, invalid: true };
}

export function applyTail(tail: number, base?: URLSearchParams | string): URLSearchParams {
  const params = new URLSearchParams(base ?? "");
  params.delete("tail");
  if (tail !== DEFAULT_TAIL) params.set("tail", String(tail));
  return params;
}

// ---------- the view ----------

export interface LogLine {
  /** Its place in what this connection received: 0, 1, 2 … */
  n: number;
  text: string;
}

export interface LogView {
  /** Shown, oldest first. */
  lines: LogLine[];
  /** Arrived while paused, oldest first: counted, not shown. */
  pending: LogLine[];
  paused: boolean;
  /** Lines received since the view was (re)started. */
  received: number;
}

export const EMPTY_LOG: LogView = { lines: [], pending: [], paused: false, received: 0 };

export type LogAction = { type: "lines"; lines: readonly string[] } | FollowAction | { type: "reset" };

function keepLast<T>(items: T[], max: number): T[] {
  return items.length > max ? items.slice(items.length - max) : items;
}

/**
 * Lines come in at the end. While paused they are held (the shown ones do not move: nothing is added or dropped
 * above the reader); on resume they join the shown ones. Only the last `max` lines of the stream are kept.
 */
export function logReducerKeeping(max: number): (state: LogView, action: LogAction) => LogView {
  return (state, action) => reduce(state, action, max);
}

export const logReducer = logReducerKeeping(MAX_LINES);

function reduce(state: LogView, action: LogAction, max: number): LogView {
  switch (action.type) {
    case "lines": {
      if (action.lines.length === 0) return state;
      const added = action.lines.map((text, i) => ({ n: state.received + i, text }));
      const received = state.received + added.length;
      if (state.paused) return { ...state, pending: keepLast([...state.pending, ...added], max), received };
      return { ...state, lines: keepLast([...state.lines, ...added], max), received };
    }
    case "scroll":
    case "pause":
    case "resume": {
      const step = followStep(state.paused, action);
      if (step === "pause") return { ...state, paused: true };
      if (step === "resume") return { ...state, lines: keepLast([...state.lines, ...state.pending], max), pending: [], paused: false };
      return state;
    }
    case "reset":
      return EMPTY_LOG;
  }
}

/** Lines received but no longer kept (the oldest, past MAX_LINES): every line received is shown, held or dropped. */
export function droppedCount(state: LogView): number {
  return state.received - state.lines.length - state.pending.length;
}

/** What the Download button saves: every line kept (shown and held), one per line. */
export function logText(state: LogView): string {
  const all = [...state.lines, ...state.pending];
  return all.length ? `${all.map((l) => l.text).join("\n")}\n` : "";
}

/** `sb-1-logs-2026-12-05T23-59-01Z.txt` */
export function logFileName(sandboxId: string, at: Date): string {
  const stamp = at.toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
  return `${sandboxId.replace(/[^A-Za-z0-9_.@-]/g, "_")}-logs-${stamp}.txt`;
}

// ---------- the socket ----------

export type LogSocketState =
  | "connecting" // opened, not welcomed yet
  | "following" // welcomed: lines flow
  | "ended" // the bus sent `end`: the container stopped (or the engine ended the stream)
  | "refused" // the bus sent `error` (no container yet, unknown sandbox, a bad tail, a refused key …)
  | "dropped" // the connection closed without `end`
  | "closed"; // stopped by the page

/** The status the bus would answer over HTTP for an `error` frame's code (frames carry no status). */
const CODE_STATUS: Record<string, number> = {
  validation_error: 400,
  invalid_frame: 400,
  invalid_json: 400,
  unauthorized: 401,
  forbidden: 403,
  sandbox_mismatch: 403,
  workspace_mismatch: 403,
  not_found: 404,
  unknown_sandbox: 404,
  conflict: 409,
  no_container: 409,
  managed_sandboxes_disabled: 409,
  too_many_requests: 429,
  internal_error: 500,
  unavailable: 503,
  database_unavailable: 503,
};

/** An `error` frame as the ApiError the same refusal over REST would be. */
export function frameError(frame: Record<string, unknown>): ApiError {
  const code = typeof frame.code === "string" ? frame.code : "error";
  const message = typeof frame.message === "string" ? frame.message : code;
  const details = typeof frame.details === "object" && frame.details !== null ? (frame.details as Record<string, unknown>) : {};
  const status = CODE_STATUS[code] ?? 400;
  return new ApiError(status === 401 ? "unauthorized" : "http", status, code, message, details);
}

export interface LogSocketOptions {
  url: string;
  token: string;
  createSocket?: (url: string) => SocketLike;
  /** Lines are handed over at most this often (ms). */
  batchMs?: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  onState?: (state: LogSocketState) => void;
  onWelcome?: (info: { containerId: string | null }) => void;
  onLines?: (lines: string[]) => void;
  /** `end`: why the stream ended ("the container stopped"). */
  onEnd?: (reason: string) => void;
  /** `error`: the bus refused the socket. */
  onRefused?: (error: ApiError) => void;
  /** Closed without `end` or `error`. */
  onDropped?: (info: { code: number; reason: string }) => void;
  /** The bus refused the key. */
  onUnauthorized?: () => void;
}

/** One follow of a container's output; no reconnect (a new follow starts again from `tail`). */
export class LogSocket {
  private socket: SocketLike | null = null;
  private buffer: string[] = [];
  private timer: unknown = null;
  private state: LogSocketState = "connecting";
  private readonly opts: Required<Pick<LogSocketOptions, "createSocket" | "batchMs" | "setTimer" | "clearTimer">> & LogSocketOptions;

  constructor(options: LogSocketOptions) {
    this.opts = {
      createSocket: (url) => new WebSocket(url) as unknown as SocketLike,
      batchMs: 100,
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
      ...options,
    };
  }

  get currentState(): LogSocketState {
    return this.state;
  }

  start(): void {
    this.setState("connecting");
    let socket: SocketLike;
    try {
      socket = openAuthenticated(this.opts.createSocket, this.opts.url, this.opts.token);
    } catch {
      this.setState("dropped");
      this.opts.onDropped?.({ code: 1006, reason: "the socket could not be opened" });
      return;
    }
    this.socket = socket;
    socket.onmessage = (ev) => this.handleFrame(ev.data);
    socket.onerror = () => {
      // A close event follows.
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.flush();
      if (this.state === "ended" || this.state === "refused" || this.state === "closed") return;
      if (ev.code === 1008 && ev.reason === "unauthorized") {
        this.refuse(frameError({ code: "unauthorized", message: "the bus refused the key" }));
        return;
      }
      this.setState("dropped");
      this.opts.onDropped?.({ code: ev.code, reason: ev.reason });
    };
  }

  stop(): void {
    if (this.timer !== null) this.opts.clearTimer(this.timer);
    this.timer = null;
    this.buffer = [];
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onclose = null;
      socket.onmessage = null;
      socket.onerror = null;
      socket.onopen = null;
      try {
        socket.close(1000, "page closed");
      } catch {
        // already closed
      }
    }
    if (this.state === "connecting" || this.state === "following") this.setState("closed");
  }

  private setState(state: LogSocketState): void {
    this.state = state;
    this.opts.onState?.(state);
  }

  private refuse(error: ApiError): void {
    this.setState("refused");
    this.opts.onRefused?.(error);
    if (error.code === "unauthorized") this.opts.onUnauthorized?.();
  }

  /** Hand the buffered lines over now. */
  flush(): void {
    if (this.timer !== null) this.opts.clearTimer(this.timer);
    this.timer = null;
    if (this.buffer.length === 0) return;
    const lines = this.buffer;
    this.buffer = [];
    this.opts.onLines?.(lines);
  }

  private handleFrame(raw: unknown): void {
    if (typeof raw !== "string") return;
    let frame: unknown;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null) return;
    const f = frame as Record<string, unknown>;
    switch (f.type) {
      case "welcome":
        this.setState("following");
        this.opts.onWelcome?.({ containerId: typeof f.container_id === "string" ? f.container_id : null });
        break;
      case "log":
        if (typeof f.line !== "string") break;
        this.buffer.push(f.line);
        if (this.timer === null) this.timer = this.opts.setTimer(() => this.flush(), this.opts.batchMs);
        break;
      case "end":
        this.flush();
        this.setState("ended");
        this.opts.onEnd?.(typeof f.reason === "string" ? f.reason : "the stream ended");
        break;
      case "error":
        this.flush();
        this.refuse(frameError(f));
        break;
      default:
        break;
    }
  }
}
