import { describe, expect, it } from "vitest";
import { DEFAULT_BACKOFF } from "./backoff";
import { EventSocket, eventsUrl, type BusEvent, type SocketLike, type SocketState } from "./eventSocket";

class FakeSocket implements SocketLike {
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: string[] = [];
  closed = false;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.closed = true;
  }
  // server side
  open() {
    this.onopen?.({});
  }
  frame(obj: unknown) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  drop(code = 1006, reason = "") {
    this.onclose?.({ code, reason });
  }
}

function setup() {
  const sockets: FakeSocket[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const states: { state: SocketState; retryInMs: number | null }[] = [];
  const events: BusEvent[] = [];
  const welcomes: boolean[] = [];
  let unauthorized = 0;
  const es = new EventSocket({
    url: "ws://bus/ws/events",
    token: "cbk_key",
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    backoff: { ...DEFAULT_BACKOFF, jitter: 0 },
    now: () => 42,
    setTimer: (fn, ms) => {
      timers.push({ fn, ms });
      return timers.length;
    },
    clearTimer: () => {},
    onEvent: (e) => events.push(e),
    onState: (state, info) => states.push({ state, retryInMs: info.retryInMs }),
    onWelcome: (resumed) => welcomes.push(resumed),
    onUnauthorized: () => unauthorized++,
  });
  return { es, sockets, timers, states, events, welcomes, unauthorized: () => unauthorized };
}

describe("eventsUrl", () => {
  it("uses the page's origin and ws/wss by its scheme", () => {
    expect(eventsUrl({ protocol: "http:", host: "localhost:8000" })).toBe("ws://localhost:8000/ws/events");
    expect(eventsUrl({ protocol: "https:", host: "bus.example" })).toBe("wss://bus.example/ws/events");
  });
});

describe("EventSocket", () => {
  it("authenticates with an auth first frame, never in the URL", () => {
    const t = setup();
    t.es.start();
    expect(t.sockets).toHaveLength(1);
    expect(t.sockets[0]!.url).toBe("ws://bus/ws/events");
    expect(t.sockets[0]!.url).not.toContain("cbk_key");
    t.sockets[0]!.open();
    expect(t.sockets[0]!.sent.map((s) => JSON.parse(s))).toEqual([{ type: "auth", token: "cbk_key" }]);
    expect(t.es.currentState).toBe("connecting");
    t.sockets[0]!.frame({ type: "welcome" });
    expect(t.es.currentState).toBe("open");
    expect(t.welcomes).toEqual([false]);
  });

  it("hands on event frames", () => {
    const t = setup();
    t.es.start();
    t.sockets[0]!.open();
    t.sockets[0]!.frame({ type: "welcome" });
    t.sockets[0]!.frame({ type: "event", event: "message.accepted", data: { message_id: "m1" }, timestamp: 1.5 });
    t.sockets[0]!.onmessage?.({ data: "not json" });
    t.sockets[0]!.frame({ type: "pong" });
    expect(t.events).toEqual([{ event: "message.accepted", data: { message_id: "m1" }, timestamp: 1.5, receivedAt: 42 }]);
  });

  it("reconnects with a growing, capped delay and resets it once welcomed", () => {
    const t = setup();
    t.es.start();
    t.sockets[0]!.open();
    t.sockets[0]!.frame({ type: "welcome" });
    t.sockets[0]!.drop();
    expect(t.es.currentState).toBe("reconnecting");
    const delays: number[] = [];
    for (let i = 0; i < 9; i++) {
      const timer = t.timers[t.timers.length - 1]!;
      delays.push(timer.ms);
      timer.fn();
      t.sockets[t.sockets.length - 1]!.drop();
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    // the next connection works: the back-off starts over and the page is told it resumed
    t.timers[t.timers.length - 1]!.fn();
    const s = t.sockets[t.sockets.length - 1]!;
    s.open();
    s.frame({ type: "welcome" });
    expect(t.welcomes).toEqual([false, true]);
    expect(t.es.currentState).toBe("open");
    s.drop(1001, "going away");
    expect(t.timers[t.timers.length - 1]!.ms).toBe(500);
    expect(t.states.some((x) => x.state === "reconnecting" && x.retryInMs === 30000)).toBe(true);
  });

  it("resumes after the last event it saw, and says events were missed only when the bus could not replay them", () => {
    const t = setup();
    t.es.start();
    t.sockets[0]!.open();
    t.sockets[0]!.frame({ type: "welcome", last_event_id: "aaaaaaaaaaaa-7" });
    t.sockets[0]!.drop();
    t.timers[t.timers.length - 1]!.fn();
    expect(t.sockets[1]!.url).toBe("ws://bus/ws/events?since=aaaaaaaaaaaa-7"); // quiet so far: the bus's newest
    t.sockets[1]!.open();
    t.sockets[1]!.frame({ type: "welcome", last_event_id: "aaaaaaaaaaaa-9", resumed: true, replayed: 2 });
    t.sockets[1]!.frame({ type: "event", id: "aaaaaaaaaaaa-8", event: "sandbox.registered", data: {}, timestamp: 1 });
    t.sockets[1]!.drop();
    t.timers[t.timers.length - 1]!.fn();
    expect(t.sockets[2]!.url).toBe("ws://bus/ws/events?since=aaaaaaaaaaaa-8");
    t.sockets[2]!.open();
    t.sockets[2]!.frame({ type: "welcome", last_event_id: "bbbbbbbbbbbb-3", resumed: false, missed: "another API process" });
    t.sockets[2]!.drop();
    t.timers[t.timers.length - 1]!.fn();
    expect(t.sockets[3]!.url).toBe("ws://bus/ws/events?since=bbbbbbbbbbbb-3"); // from the new process's newest
    expect(t.welcomes).toEqual([false, false, true]);
    expect(t.events.map((e) => e.id)).toEqual(["aaaaaaaaaaaa-8"]);
  });

  it("stops on an unauthorized refusal and reports it once", () => {
    const t = setup();
    t.es.start();
    t.sockets[0]!.open();
    t.sockets[0]!.frame({ type: "error", code: "unauthorized", message: "revoked", details: { reason: "revoked" } });
    t.sockets[0]!.drop(1008, "unauthorized");
    expect(t.es.currentState).toBe("unauthorized");
    expect(t.unauthorized()).toBe(1);
    expect(t.timers).toHaveLength(0);
  });

  it("treats a bare close 1008 unauthorized the same", () => {
    const t = setup();
    t.es.start();
    t.sockets[0]!.drop(1008, "unauthorized");
    expect(t.es.currentState).toBe("unauthorized");
    expect(t.unauthorized()).toBe(1);
  });

  it("stops without signing out when the key may not observe events", () => {
    const t = setup();
    t.es.start();
    t.sockets[0]!.open();
    t.sockets[0]!.frame({ type: "error", code: "forbidden", message: "no", details: {} });
    t.sockets[0]!.drop(1008, "forbidden");
    expect(t.es.currentState).toBe("forbidden");
    expect(t.unauthorized()).toBe(0);
    expect(t.timers).toHaveLength(0);
  });

  it("stop() closes the socket and cancels reconnecting", () => {
    const t = setup();
    t.es.start();
    const s = t.sockets[0]!;
    t.es.stop();
    expect(s.closed).toBe(true);
    expect(t.es.currentState).toBe("closed");
    s.drop(); // a late close event changes nothing
    expect(t.timers).toHaveLength(0);
    expect(t.es.currentState).toBe("closed");
  });
});
