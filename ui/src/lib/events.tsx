/**
 * One `/ws/events` socket for the signed-in page, shared by every view: its state, its events, and the
 * arrival times of `message.accepted` events for the message-rate sparkline.
 */
import {
  createContext,
  useContext,
  useEffect,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";
import { EventSocket, eventsUrl, type BusEvent, type SocketState } from "./eventSocket";
import { EventWindow } from "./rate";

export type HubMessage = { kind: "event"; event: BusEvent } | { kind: "welcome"; missed: boolean };

export interface SocketStatus {
  state: SocketState;
  attempt: number;
  retryInMs: number | null;
}

export class EventsHub {
  readonly accepted = new EventWindow();
  /** When events started to be counted (the first welcome), ms since the epoch. */
  watchingSince: number | null = null;
  private status: SocketStatus = { state: "connecting", attempt: 0, retryInMs: null };
  private readonly statusListeners = new Set<() => void>();
  private readonly listeners = new Set<(message: HubMessage) => void>();
  private socket: EventSocket | null = null;

  constructor(
    private readonly token: string,
    private readonly onUnauthorized: () => void,
  ) {}

  start(): void {
    this.socket = new EventSocket({
      url: eventsUrl(window.location),
      token: this.token,
      onState: (state, info) => {
        this.status = { state, attempt: info.attempt, retryInMs: info.retryInMs };
        for (const fn of this.statusListeners) fn();
      },
      onWelcome: (missed) => {
        this.watchingSince ??= Date.now();
        this.emit({ kind: "welcome", missed });
      },
      onEvent: (event) => {
        if (event.event === "message.accepted") {
          const id = event.data.message_id;
          this.accepted.record(event.receivedAt, typeof id === "string" ? id : undefined);
        }
        this.emit({ kind: "event", event });
      },
      onUnauthorized: this.onUnauthorized,
    });
    this.socket.start();
  }

  stop(): void {
    this.socket?.stop();
    this.socket = null;
  }

  getStatus = (): SocketStatus => this.status;

  subscribeStatus = (fn: () => void): (() => void) => {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  };

  subscribe(fn: (message: HubMessage) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(message: HubMessage): void {
    for (const fn of this.listeners) fn(message);
  }
}

const HubContext = createContext<EventsHub | null>(null);

export function EventsProvider({
  token,
  onUnauthorized,
  children,
}: {
  token: string;
  onUnauthorized: () => void;
  children: ReactNode;
}) {
  const unauthorized = useRef(onUnauthorized);
  unauthorized.current = onUnauthorized;
  const [hub, setHub] = useState<EventsHub | null>(null);
  useEffect(() => {
    const h = new EventsHub(token, () => unauthorized.current());
    h.start();
    setHub(h);
    return () => h.stop();
  }, [token]);
  return <HubContext.Provider value={hub}>{children}</HubContext.Provider>;
}

export function useEventsHub(): EventsHub | null {
  return useContext(HubContext);
}

const CONNECTING: SocketStatus = { state: "connecting", attempt: 0, retryInMs: null };

export function useSocketStatus(): SocketStatus {
  const hub = useEventsHub();
  return useSyncExternalStore(
    hub ? hub.subscribeStatus : noopSubscribe,
    hub ? hub.getStatus : () => CONNECTING,
  );
}

function noopSubscribe(): () => void {
  return () => {};
}

/**
 * Call `onChange` when one of the named events arrives, or when the socket is welcomed again after a drop
 * (events may have been missed meanwhile), so the caller can refetch.
 */
export function useBusEvents(names: readonly string[], onChange: (event: BusEvent | null) => void): void {
  const hub = useEventsHub();
  const handler = useRef(onChange);
  handler.current = onChange;
  const key = names.join(",");
  useEffect(() => {
    if (!hub) return;
    const wanted = new Set(key.split(","));
    return hub.subscribe((message) => {
      if (message.kind === "welcome") {
        if (message.missed) handler.current(null); // reconnected without a replay: refetch
      } else if (wanted.has(message.event.event)) {
        handler.current(message.event);
      }
    });
  }, [hub, key]);
}
