/** What can go wrong calling the bus, mapped from HTTP answers and fetch failures. */

export type ApiErrorKind =
  /** 401: no key, or a key the bus refuses (details.reason: invalid, expired, revoked, …). */
  | "unauthorized"
  /** The request never got an answer: the bus is down, the network is gone, DNS, CORS, … */
  | "network"
  /** Any other non-2xx answer; `code`, `message`, `details` come from the bus's error body when it sent one. */
  | "http"
  /** A 2xx answer whose body is not the JSON it should be. */
  | "invalid_response";

export class ApiError extends Error {
  constructor(
    readonly kind: ApiErrorKind,
    /** HTTP status, or null when there was no answer. */
    readonly status: number | null,
    /** The bus's error code (`validation_error`, `forbidden`, …) or one of ours (`bus_unreachable`, `http_error`). */
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    /** Seconds, from a Retry-After header. */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The bus's error body, `{"error": {"code", "message", "details"}}`, if `body` is one. */
export function parseErrorBody(
  body: unknown,
): { code: string; message: string; details: Record<string, unknown> } | null {
  if (!isRecord(body) || !isRecord(body.error)) return null;
  const { code, message, details } = body.error;
  if (typeof code !== "string") return null;
  return {
    code,
    message: typeof message === "string" ? message : code,
    details: isRecord(details) ? details : {},
  };
}

function parseRetryAfter(value: string | null): number | null {
  if (value === null) return null;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

/** An ApiError for a non-2xx answer, given its status, headers and body text. */
export function errorFromResponse(status: number, headers: Headers, text: string): ApiError {
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  const parsed = parseErrorBody(body);
  const retryAfter = parseRetryAfter(headers.get("Retry-After"));
  if (status === 401) {
    return new ApiError(
      "unauthorized",
      status,
      parsed?.code ?? "unauthorized",
      parsed?.message ?? "authentication required",
      parsed?.details ?? {},
      retryAfter,
    );
  }
  if (parsed) return new ApiError("http", status, parsed.code, parsed.message, parsed.details, retryAfter);
  return new ApiError("http", status, "http_error", `the bus answered HTTP ${status}`, {}, retryAfter);
}

/** An ApiError for a fetch that got no answer. */
export function networkError(cause: unknown): ApiError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new ApiError("network", null, "bus_unreachable", "the bus could not be reached", { cause: detail });
}

export function isAbort(error: unknown): boolean {
  return error instanceof DOMException
    ? error.name === "AbortError"
    : error instanceof Error && error.name === "AbortError";
}

/** One sentence for the UI. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    switch (error.kind) {
      case "network":
        return "The bus is unreachable: check that it is running and that this page's network works.";
      case "unauthorized": {
        const reason = typeof error.details.reason === "string" ? ` (${error.details.reason})` : "";
        return `The bus refused the key${reason}.`;
      }
      case "invalid_response":
        return `The bus sent an answer this page does not understand (HTTP ${error.status}).`;
      case "http": {
        const wait = error.retryAfter !== null ? ` Try again in ${error.retryAfter} s.` : "";
        return `${capitalize(error.message)} (${error.code}, HTTP ${error.status}).${wait}`;
      }
    }
  }
  return error instanceof Error ? error.message : String(error);
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
