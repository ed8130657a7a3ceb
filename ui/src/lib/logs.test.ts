import { describe, expect, it } from "vitest";
import type { SocketLike } from "./eventSocket";
import {
  applyTail,
  DEFAULT_TAIL,
  droppedCount,
  EMPTY_LOG,
  frameError,
  logFileName,
  logReducerKeeping,
  LogSocket,
  logsUrl,
  logText,
  parseTail,
  type LogAction,
  type LogSocketState,
  type LogView,
} from "./logs";

describe("logs URL", () => {
  it("opens the page's own origin with the tail and no credentials", () => {
    expect(logsUrl({ protocol: "http:", host: "bus:8000" }, "sb-1", 100)).toBe("ws://bus:8000/ws/sandboxes/sb-1/logs?tail=100");
    expect(logsUrl({ protocol: "https:", host: "bus" }, "a b", 0)).toBe("wss://bus/ws/sandboxes/a%20b/logs?tail=0");
  });

  it("keeps the tail in the page's address, within what the view keeps", () => {
    expect(parseTail("")).toEqual({ tail: DEFAULT_TAIL, invalid: false });
    expect(parseTail("tail=500")).toEqual({ tail: 500, invalid: false });
    expect(parseTail("tail=0")).toEqual({ tail: 0, invalid: false });
    expect(parseTail("tail=9000")).toEqual({ tail: DEFAULT_TAIL, invalid: true });
    expect(parseTail("tail=-3")).toEqual({ tail: DEFAULT_TAIL, invalid: true });
    expect(applyTail(500, "x=1").toString()).toBe("x=1&tail=500");
    expect(applyTail(DEFAULT_TAIL, "tail=500").toString()).toBe("");
  });
});

describe("log view", () => {
  const reducer = logReducerKeeping(5);
  const run = (actions: LogAction[], from: LogView = EMPTY_LOG) => actions.reduce(reducer, from);
  const texts = (lines: { text: string }[]) => lines.map((l) => l.text);

  it("appends lines and keeps only the newest", () => {
    const s = run([{ type: "lines", lines: ["a", "b", "c"] }, { type: "lines", lines: ["d", "e", "f", "g"] }]);
    expect(texts(s.lines)).toEqual(["c", "d", "e", "f", "g"]);
    expect(s.lines.map((l) => l.n)).toEqual([2, 3, 4, 5, 6]);
    expect(s.received).toBe(7);
    expect(droppedCount(s)).toBe(2);
  });

  it("holds new lines while scrolled up, without touching the shown ones, and lets them in on resume", () => {
    const s = run([{ type: "lines", lines: ["a", "b"] }, { type: "scroll", atNewest: false }, { type: "lines", lines: ["c", "d"] }]);
    expect(s.paused).toBe(true);
    expect(texts(s.lines)).toEqual(["a", "b"]);
    expect(texts(s.pending)).toEqual(["c", "d"]);
    const r = reducer(s, { type: "resume" });
    expect(r).toMatchObject({ paused: false, pending: [] });
    expect(texts(r.lines)).toEqual(["a", "b", "c", "d"]);
  });

  it("scrolling back to the end resumes; an explicit pause holds too", () => {
    const s = run([{ type: "pause" }, { type: "lines", lines: ["a"] }]);
    expect(s.lines).toEqual([]);
    expect(reducer(s, { type: "scroll", atNewest: false })).toBe(s);
    expect(texts(reducer(s, { type: "scroll", atNewest: true }).lines)).toEqual(["a"]);
  });

  it("caps the held lines too and counts what was dropped; the shown ones stay as they were", () => {
    const s = run([{ type: "lines", lines: ["a", "b", "c"] }, { type: "pause" }, { type: "lines", lines: ["1", "2", "3", "4", "5", "6", "7"] }]);
    expect(texts(s.lines)).toEqual(["a", "b", "c"]);
    expect(texts(s.pending)).toEqual(["3", "4", "5", "6", "7"]);
    expect(droppedCount(s)).toBe(2);
    const r = reducer(s, { type: "resume" });
    expect(texts(r.lines)).toEqual(["3", "4", "5", "6", "7"]);
    expect(droppedCount(r)).toBe(5);
  });

  it("downloads every kept line, shown and held, one per line", () => {
    const s = run([{ type: "lines", lines: ["a", ""] }, { type: "pause" }, { type: "lines", lines: ["b"] }]);
    expect(logText(s)).toBe("a\n\nb\n");
    expect(logText(EMPTY_LOG)).toBe("");
    expect(logFileName("sb/1", new Date("2026-12-05T23:59:01.123Z"))).toBe("sb_1-logs-2026-12-05T23-59-01Z.txt");
  });

  it("starts afresh on reset", () => {
    expect(reducer(run([{ type: "pause" }, { type: "lines", lines: ["a"] }]), { type: "reset" })).toEqual(EMPTY_LOG);
  });
});

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
  frame(f: Record<string, unknown>) {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
}

function setup() {
  const sockets: FakeSocket[] = [];
  const timers: (() => void)[] = [];
  const seen = { states: [] as LogSocketState[], batches: [] as string[][], ended: [] as string[], refused: [] as string[], dropped: 0, unauthorized: 0 };
  const socket = new LogSocket({
    url: "ws://bus/ws/sandboxes/sb-1/logs?tail=100",
    token: "cbk_key",
    createSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    setTimer: (fn) => timers.push(fn),
    clearTimer: () => {},
    onState: (s) => seen.states.push(s),
    onLines: (lines) => seen.batches.push(lines),
    onEnd: (reason) => seen.ended.push(reason),
    onRefused: (e) => seen.refused.push(`${e.status} ${e.code}: ${e.message}`),
    onDropped: () => seen.dropped++,
    onUnauthorized: () => seen.unauthorized++,
  });
  socket.start();
  const ws = sockets[0]!;
  const tick = () => timers.splice(0).forEach((fn) => fn());
  return { socket, ws, seen, tick };
}

describe("logs socket", () => {
  it("authenticates with its first frame, not the URL, and hands lines over in batches", () => {
    const { ws, seen, tick } = setup();
    expect(ws.url).not.toContain("cbk_key");
    ws.onopen?.({});
    expect(JSON.parse(ws.sent[0]!)).toEqual({ type: "auth", token: "cbk_key" });
    ws.frame({ type: "welcome", sandbox_id: "sb-1", container_id: "c1" });
    ws.frame({ type: "log", line: "one" });
    ws.frame({ type: "log", line: "two" });
    expect(seen.batches).toEqual([]);
    tick();
    ws.frame({ type: "log", line: "three" });
    tick();
    expect(seen.batches).toEqual([["one", "two"], ["three"]]);
    expect(seen.states).toEqual(["connecting", "following"]);
  });

  it("delivers the last lines before saying the container stopped, and is not 'dropped' by the close after it", () => {
    const { ws, seen } = setup();
    ws.frame({ type: "welcome" });
    ws.frame({ type: "log", line: "bye" });
    ws.frame({ type: "end", reason: "the container stopped" });
    ws.onclose?.({ code: 1000, reason: "end of logs" });
    expect(seen.batches).toEqual([["bye"]]);
    expect(seen.ended).toEqual(["the container stopped"]);
    expect(seen.dropped).toBe(0);
    expect(seen.states.at(-1)).toBe("ended");
  });

  it("reports the bus's refusal as the REST error it would be", () => {
    const { ws, seen } = setup();
    ws.frame({ type: "error", code: "no_container", message: "sandbox 'sb-1' has no container yet (state creating)", details: { state: "creating" } });
    ws.onclose?.({ code: 1008, reason: "no_container" });
    expect(seen.refused).toEqual(["409 no_container: sandbox 'sb-1' has no container yet (state creating)"]);
    expect(seen.states.at(-1)).toBe("refused");
    expect(seen.dropped).toBe(0);
    expect(frameError({ code: "forbidden", message: "no", details: { permission: "sandboxes.logs" } }).status).toBe(403);
  });

  it("signs out when the key is refused", () => {
    const { ws, seen } = setup();
    ws.frame({ type: "error", code: "unauthorized", message: "bad key", details: { reason: "revoked" } });
    expect(seen.unauthorized).toBe(1);
  });

  it("says when the connection drops without an end, with what it had", () => {
    const { ws, seen } = setup();
    ws.frame({ type: "welcome" });
    ws.frame({ type: "log", line: "x" });
    ws.onclose?.({ code: 1006, reason: "" });
    expect(seen.batches).toEqual([["x"]]);
    expect(seen.dropped).toBe(1);
    expect(seen.states.at(-1)).toBe("dropped");
  });

  it("closes the socket when the page stops it, and reports nothing after", () => {
    const { socket, ws, seen } = setup();
    ws.frame({ type: "welcome" });
    socket.stop();
    expect(ws.closed).toBe(true);
    expect(seen.states.at(-1)).toBe("closed");
    expect(ws.onclose).toBeNull();
  });
});
