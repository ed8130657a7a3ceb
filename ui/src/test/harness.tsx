// Helpers for component tests: a fake bus behind fetch and a fake WebSocket.
import { render } from "@testing-library/react";
import { vi } from "vitest";
import { App } from "@/App";

export const KEY = "cbk_test_key_0123456789";

export class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  sent: string[] = [];
  constructor(readonly url: string) {
    FakeWebSocket.instances.push(this);
  }
  send(data: string) {
    this.sent.push(data);
  }
  close() {}
  /** Open, authenticate and welcome. */
  welcome() {
    this.onopen?.();
    this.onmessage?.({ data: JSON.stringify({ type: "welcome" }) });
  }
  event(event: string, data: Record<string, unknown>) {
    this.onmessage?.({ data: JSON.stringify({ type: "event", event, data, timestamp: Date.now() / 1000 }) });
  }
}

export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

export interface Call {
  method: string;
  url: string;
  body: unknown;
}

export type Handler = (call: Call) => Response | Promise<Response>;

/** Install a fake bus; returns the calls made to it. */
export function fakeBus(handler: Handler): Call[] {
  const calls: Call[] = [];
  const fetchMock = vi.fn((input: RequestInfo | URL, init?: RequestInit) =>
    Promise.resolve().then(() => {
      const call = {
        method: init?.method ?? "GET",
        url: String(input),
        body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
      };
      calls.push(call);
      return handler(call);
    }),
  );
  FakeWebSocket.instances = [];
  vi.stubGlobal("fetch", fetchMock);
  vi.stubGlobal("WebSocket", FakeWebSocket);
  return calls;
}

export function openSignedIn(path: string) {
  window.sessionStorage.setItem("collab-bus.api-key", KEY);
  window.history.pushState(null, "", path);
  return render(<App />);
}

export const forbidden = () =>
  json(403, {
    error: {
      code: "forbidden",
      message: "role 'viewer' may not dead_letters manage",
      details: { permission: "dead_letters.manage", role: "viewer" },
    },
  });
