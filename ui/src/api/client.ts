/**
 * A small typed client for the bus's REST API. Paths, query parameters and answers are typed from
 * `schema.d.ts`, which `npm run gen:api` generates from `openapi.json` (the bus's OpenAPI document), so the
 * page can only call operations the bus documents. Every call goes to the page's own origin (relative URLs)
 * and carries the key as `Authorization: Bearer`.
 */
import { ApiError, errorFromResponse, isAbort, networkError } from "./errors";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];

/** Paths that have a GET operation. */
export type GetPath = {
  [P in keyof paths]: paths[P] extends { get: object } ? P : never;
}[keyof paths];

type GetOperation<P extends GetPath> = paths[P] extends { get: infer O } ? O : never;

/** The JSON body of a GET's 200 answer. */
export type GetResult<P extends GetPath> =
  GetOperation<P> extends { responses: { 200: { content: { "application/json": infer T } } } } ? T : unknown;

/** The query parameters of a GET. */
export type GetQuery<P extends GetPath> =
  GetOperation<P> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;

/** The path parameters of a GET. */
export type GetPathParams<P extends GetPath> =
  GetOperation<P> extends { parameters: { path: infer A } } ? A : never;

export interface RequestOptions<P extends GetPath> {
  query?: GetQuery<P>;
  path?: GetPathParams<P>;
  signal?: AbortSignal;
}

/** HTTP methods besides GET that the client sends. */
export type Method = "post" | "put" | "delete";

/** Paths that have an operation for `M`. */
export type PathWith<M extends Method> = {
  [P in keyof paths]: paths[P] extends { [K in M]: object } ? P : never;
}[keyof paths];

type Operation<M extends Method, P extends PathWith<M>> = paths[P] extends { [K in M]: infer O } ? O : never;

type JsonOf<R> = R extends { content: { "application/json": infer T } } ? T : unknown;

/** The JSON body of the operation's success answer (200, 201 or 202). */
export type SendResult<M extends Method, P extends PathWith<M>> =
  Operation<M, P> extends { responses: infer R } ? JsonOf<R[Extract<keyof R, 200 | 201 | 202>]> : unknown;

/** The JSON request body of the operation, if it takes one. */
export type SendBody<M extends Method, P extends PathWith<M>> =
  Operation<M, P> extends { requestBody?: { content: { "application/json": infer B } } } ? B : never;

export interface SendOptions<M extends Method, P extends PathWith<M>> {
  query?: Operation<M, P> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : never;
  path?: Operation<M, P> extends { parameters: { path: infer A } } ? A : never;
  body?: SendBody<M, P>;
  signal?: AbortSignal;
}

export interface ClientOptions {
  /** The API key (or sandbox token) sent with every call; null sends none. */
  token: string | null;
  /** Called on any 401 (before the error is thrown): the key has expired or was revoked. */
  onUnauthorized?: (error: ApiError) => void;
  fetch?: typeof fetch;
}

export interface ApiClient {
  get<P extends GetPath>(path: P, options?: RequestOptions<P>): Promise<GetResult<P>>;
  /** POST, PUT or DELETE an operation of the document; a JSON body is sent when `body` is given. */
  send<M extends Method, P extends PathWith<M>>(
    method: M,
    path: P,
    options?: SendOptions<M, P>,
  ): Promise<SendResult<M, P>>;
}

/** `/api/v1/sandboxes/{sandbox_id}` + `{sandbox_id: "a b"}` + `{limit: 5}` → `/api/v1/sandboxes/a%20b?limit=5`. */
export function buildUrl(
  template: string,
  pathParams?: Record<string, string | number>,
  query?: Record<string, unknown>,
): string {
  const path = template.replace(/\{([^}]+)\}/g, (_match, name: string) => {
    const value = pathParams?.[name];
    if (value === undefined) throw new Error(`missing path parameter ${name} for ${template}`);
    return encodeURIComponent(String(value));
  });
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === undefined || value === null) continue;
    params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

export function createClient(options: ClientOptions): ApiClient {
  const doFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));

  async function request<T>(url: string, signal?: AbortSignal, method = "GET", body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (options.token) headers.Authorization = `Bearer ${options.token}`;
    const init: RequestInit = { method, headers, signal, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response: Response;
    try {
      response = await doFetch(url, init);
    } catch (cause) {
      if (isAbort(cause)) throw cause;
      throw networkError(cause);
    }
    const text = await response.text().catch(() => "");
    if (!response.ok) {
      const error = errorFromResponse(response.status, response.headers, text);
      if (error.kind === "unauthorized") options.onUnauthorized?.(error);
      throw error;
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError("invalid_response", response.status, "invalid_response", "the answer is not JSON");
    }
  }

  return {
    get(path, opts) {
      const url = buildUrl(
        path,
        opts?.path as Record<string, string | number> | undefined,
        opts?.query as Record<string, unknown> | undefined,
      );
      return request(url, opts?.signal);
    },
    send(method, path, opts) {
      const url = buildUrl(
        path,
        opts?.path as Record<string, string | number> | undefined,
        opts?.query as Record<string, unknown> | undefined,
      );
      return request(url, opts?.signal, method.toUpperCase(), opts?.body);
    },
  };
}
