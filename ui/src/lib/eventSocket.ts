/**
 * The `/ws/events` socket: authenticates with an `auth` first frame (the key never goes into the URL),
 * hands each `event` frame to its listeners and reconnects with a capped back-off when the connection drops,
 * resuming after the last event it saw (`?since=<id>`: the bus replays what it still keeps, docs/protocol.md §3.3).
 */
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff";

export interface BusEvent {
  /** The bus's id of the event (`<epoch>-<n>`), when it gave one. */
  id?: string;
  event: string;
  data: Record<string, unknown>;
  /** Unix seconds, the bus's clock. */
  timestamp: number;
  /** When this page received it (ms since the epoch, the browser's clock). */
  receivedAt: number;
}

export type SocketState =
  | "connecting" // first connection, not welcomed yet
  | "open" // welcomed: events flow
  | "reconnecting" // dropped; waiting or trying again
  | "unauthorized" // the bus refused the key: no retry
  | "forbidden" // the key may not observe events: no retry
  | "closed"; // stopped by the page

/** The subset of the browser's WebSocket this class uses (so tests can pass a fake). */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface EventSocketOptions {
  url: string;
  token: string;
  createSocket?: (url: string) => SocketLike;
  backoff?: BackoffOptions;
  random?: () => number;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  onEvent?: (event: BusEvent) => void;
  onState?: (state: SocketState, info: { attempt: number; retryInMs: number | null }) => void;
  /** Each time the socket is (again) welcomed; `missed` is true after a reconnect the bus could not resume from the
   * last event seen (another API node, a restart, too long away): events may have been missed, refetch. */
  onWelcome?: (missed: boolean) => void;
  onUnauthorized?: () => void;
}

/** A socket to `url` that sends the `auth` first frame once open: the handshake carries no credentials
 * (docs/protocol.md §6), so the key never goes into a URL or a log line. */
export function openAuthenticated(create: (url: string) => SocketLike, url: string, token: string): SocketLike {
  const socket = create(url);
  socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token }));
  return socket;
}

/** `ws://host/ws/events` or `wss://…` for the page's own origin. */
export function eventsUrl(location: { protocol: string; host: string }): string {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws/events`;
}

export class EventSocket {
  private socket: SocketLike | null = null;
  private timer: unknown = null;
  private attempt = 0;
  private welcomedOnce = false;
  /** The newest event id seen (or the bus's newest at welcome): where a reconnect resumes. */
  private lastEventId: string | null = null;
  private stopped = false;
  private state: SocketState = "connecting";
  private readonly opts: Required<Omit<EventSocketOptions, "onEvent" | "onState" | "onWelcome" | "onUnauthorized">> &
    EventSocketOptions;

  constructor(options: EventSocketOptions) {
    this.opts = {
      createSocket: (url) => new WebSocket(url) as unknown as SocketLike,
      backoff: DEFAULT_BACKOFF,
      random: Math.random,
      now: Date.now,
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
      ...options,
    };
  }

  get currentState(): SocketState {
    return this.state;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.opts.clearTimer(this.timer);
    this.timer = null;
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
    this.setState("closed", null);
  }

  private setState(state: SocketState, retryInMs: number | null): void {
    this.state = state;
    this.opts.onState?.(state, { attempt: this.attempt, retryInMs });
  }

  private connect(): void {
    this.timer = null;
    if (this.stopped) return;
    this.setState(this.welcomedOnce || this.attempt > 0 ? "reconnecting" : "connecting", null);
    let socket: SocketLike;
    try {
      const since = this.lastEventId === null ? "" : `?since=${encodeURIComponent(this.lastEventId)}`;
      socket = openAuthenticated(this.opts.createSocket, `${this.opts.url}${since}`, this.opts.token);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onmessage = (ev) => this.handleFrame(ev.data);
    socket.onerror = () => {
      // A close event always follows; reconnecting is decided there.
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped || this.state === "unauthorized" || this.state === "forbidden") return;
      if (ev.code === 1008 && ev.reason === "unauthorized") {
        this.refuse("unauthorized");
        return;
      }
      if (ev.code === 1008 && ev.reason === "forbidden") {
        this.refuse("forbidden");
        return;
      }
      this.scheduleReconnect();
    };
  }

  private refuse(state: "unauthorized" | "forbidden"): void {
    this.setState(state, null);
    if (state === "unauthorized") this.opts.onUnauthorized?.();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.opts.backoff, this.opts.random);
    this.attempt += 1;
    this.setState("reconnecting", delay);
    this.timer = this.opts.setTimer(() => this.connect(), delay);
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
      case "welcome": {
        const resumed = f.resumed === true;
        const missed = this.welcomedOnce && !resumed;
        if (!resumed) this.lastEventId = typeof f.last_event_id === "string" ? f.last_event_id : null;
        this.welcomedOnce = true;
        this.attempt = 0;
        this.setState("open", null);
        this.opts.onWelcome?.(missed);
        break;
      }
      case "event":
        if (typeof f.id === "string") this.lastEventId = f.id;
        if (typeof f.event === "string") {
          this.opts.onEvent?.({
            ...(typeof f.id === "string" ? { id: f.id } : {}),
            event: f.event,
            data: typeof f.data === "object" && f.data !== null ? (f.data as Record<string, unknown>) : {},
            timestamp: typeof f.timestamp === "number" ? f.timestamp : 0,
            receivedAt: this.opts.now(),
          });
        }
        break;
      case "error":
        // Refusals arrive as an error frame followed by close 1008 with the code as reason.
        if (f.code === "unauthorized") this.refuse("unauthorized");
        else if (f.code === "forbidden") this.refuse("forbidden");
        break;
      default:
        break;
    }
  }
}
