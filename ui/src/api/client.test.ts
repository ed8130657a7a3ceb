import { describe, expect, expectTypeOf, it, vi } from "vitest";
import { buildUrl, createClient, type GetResult } from "./client";
import { ApiError, describeError, errorFromResponse, parseErrorBody } from "./errors";

function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(typeof body === "string" ? body : JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

const errorBody = (code: string, message: string, details: Record<string, unknown> = {}) => ({
  error: { code, message, details },
});

describe("createClient", () => {
  it("sends the key as a bearer header to a relative URL and returns the JSON", async () => {
    const fetch = vi.fn(async () => jsonResponse(200, { count: 0, sandboxes: [] }));
    const api = createClient({ token: "cbk_secret", fetch });
    const result = await api.get("/api/v1/sandboxes", { query: { include_unregistered: true } });
    expect(result).toEqual({ count: 0, sandboxes: [] });
    expect(fetch).toHaveBeenCalledTimes(1);
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("/api/v1/sandboxes?include_unregistered=true");
    expect((init.headers as Record<string, string>).Authorization).toBe("Bearer cbk_secret");
    expect(url).not.toContain("cbk_secret");
  });

  it("sends no Authorization header without a key", async () => {
    const fetch = vi.fn(async () => jsonResponse(200, { status: "ready", checks: {} }));
    await createClient({ token: null, fetch }).get("/readyz");
    const [, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(init.headers).not.toHaveProperty("Authorization");
  });

  it("maps a 401 to an unauthorized error and tells onUnauthorized", async () => {
    const onUnauthorized = vi.fn();
    const fetch = vi.fn(async () =>
      jsonResponse(401, errorBody("unauthorized", "the token has been revoked", { reason: "revoked" })),
    );
    const api = createClient({ token: "k", fetch, onUnauthorized });
    const error = await api.get("/api/v1/sandboxes").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ kind: "unauthorized", status: 401, code: "unauthorized", details: { reason: "revoked" } });
    expect(onUnauthorized).toHaveBeenCalledWith(error);
    expect(describeError(error)).toBe("The bus refused the key (revoked).");
  });

  it("maps a 401 without a JSON body too", async () => {
    const fetch = vi.fn(async () => new Response("nope", { status: 401 }));
    const error = await createClient({ token: "k", fetch }).get("/api/v1/sandboxes").catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "unauthorized", code: "unauthorized", details: {} });
  });

  it("maps a failed fetch to a network error", async () => {
    const onUnauthorized = vi.fn();
    const fetch = vi.fn(async () => {
      throw new TypeError("Failed to fetch");
    });
    const error = await createClient({ token: "k", fetch, onUnauthorized })
      .get("/api/v1/sandboxes")
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "network", status: null, code: "bus_unreachable" });
    expect(onUnauthorized).not.toHaveBeenCalled();
    expect(describeError(error)).toMatch(/unreachable/);
  });

  it("passes an abort through unchanged", async () => {
    const abort = new DOMException("aborted", "AbortError");
    const fetch = vi.fn(async () => {
      throw abort;
    });
    await expect(createClient({ token: "k", fetch }).get("/api/v1/sandboxes")).rejects.toBe(abort);
  });

  it("maps the bus's error body on other statuses", async () => {
    const fetch = vi.fn(async () =>
      jsonResponse(403, errorBody("forbidden", "role viewer may not do this", { permission: "x" })),
    );
    const onUnauthorized = vi.fn();
    const error = await createClient({ token: "k", fetch, onUnauthorized })
      .get("/api/v1/dead-letters")
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      kind: "http",
      status: 403,
      code: "forbidden",
      message: "role viewer may not do this",
      details: { permission: "x" },
    });
    expect(onUnauthorized).not.toHaveBeenCalled();
    expect(describeError(error)).toBe("Role viewer may not do this (forbidden, HTTP 403).");
  });

  it("keeps Retry-After", async () => {
    const fetch = vi.fn(async () =>
      jsonResponse(429, errorBody("too_many_requests", "slow down", { reason: "rate_limit" }), { "Retry-After": "7" }),
    );
    const error = await createClient({ token: "k", fetch }).get("/api/v1/sandboxes").catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "http", status: 429, retryAfter: 7 });
    expect(describeError(error)).toMatch(/Try again in 7 s/);
  });

  it("copes with an error answer that is not the bus's error body", async () => {
    const fetch = vi.fn(async () => new Response("<html>Bad gateway</html>", { status: 502 }));
    const error = await createClient({ token: "k", fetch }).get("/api/v1/sandboxes").catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "http", status: 502, code: "http_error", details: {} });
  });

  it("refuses a 2xx answer that is not JSON", async () => {
    const fetch = vi.fn(async () => new Response("<html></html>", { status: 200 }));
    const error = await createClient({ token: "k", fetch }).get("/api/v1/sandboxes").catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: "invalid_response", status: 200 });
  });

  it("types answers from the OpenAPI document", () => {
    expectTypeOf<GetResult<"/api/v1/sandboxes">["sandboxes"][number]["status"]>().toEqualTypeOf<
      "online" | "offline" | "unregistered"
    >();
    expectTypeOf<GetResult<"/api/v1/dead-letters">["total"]>().toEqualTypeOf<number>();
  });
});

describe("parseErrorBody", () => {
  it("reads code, message, details and fills in what is missing", () => {
    expect(parseErrorBody(errorBody("a", "b", { c: 1 }))).toEqual({ code: "a", message: "b", details: { c: 1 } });
    expect(parseErrorBody({ error: { code: "a" } })).toEqual({ code: "a", message: "a", details: {} });
    expect(parseErrorBody({ error: "a" })).toBeNull();
    expect(parseErrorBody({ error: { message: "no code" } })).toBeNull();
    expect(parseErrorBody(null)).toBeNull();
    expect(parseErrorBody([1])).toBeNull();
  });

  it("is used for a 503 not_ready from /readyz", () => {
    const e = errorFromResponse(503, new Headers(), JSON.stringify(errorBody("not_ready", "not ready", { database: "ok", broker: "down" })));
    expect(e).toMatchObject({ kind: "http", code: "not_ready", details: { broker: "down" } });
  });
});

describe("buildUrl", () => {
  it("fills and encodes path parameters and skips empty query values", () => {
    expect(buildUrl("/api/v1/sandboxes/{sandbox_id}", { sandbox_id: "a b/c" }, { x: undefined, y: null, z: 0 })).toBe(
      "/api/v1/sandboxes/a%20b%2Fc?z=0",
    );
  });

  it("refuses a missing path parameter", () => {
    expect(() => buildUrl("/api/v1/sandboxes/{sandbox_id}")).toThrow(/sandbox_id/);
  });
});
