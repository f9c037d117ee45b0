/**
 * Error codes and the HTTP status each one answers with. Every 4xx/5xx the API
 * sends is one of these, rendered once by worker/http/error-envelope.ts as
 * `{error:{code,message,request_id}}`.
 */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  VALIDATION_FAILED: 400,
  INVALID_JSON: 400,
  INVALID_ID: 400,
  UNAUTHORIZED: 401,
  INSUFFICIENT_CREDITS: 402,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  WINDOW_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  INVALID_STATE_TRANSITION: 409,
  COMPUTER_NOT_RUNNING: 409,
  IDEMPOTENCY_KEY_IN_USE: 409,
  /** OpenComputers: the host's agent is not connected (or the host is revoked), so no job or terminal can be dispatched to it. */
  HOST_NOT_CONNECTED: 409,
  PAYLOAD_TOO_LARGE: 413,
  /** A download's Range lies outside the file. */
  RANGE_NOT_SATISFIABLE: 416,
  UNSUPPORTED_MEDIA_TYPE: 415,
  IDEMPOTENCY_KEY_REUSED: 422,
  TENANT_RESOLUTION_FAILED: 422,
  REGION_UNAVAILABLE: 422,
  ISOLATION_UNAVAILABLE: 422,
  /** Agents: no model to dispatch to (no cluster named, no provider secrets, no operator default). */
  MODEL_NOT_CONFIGURED: 422,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  AGENT_UNAVAILABLE: 502,
  AGENT_ERROR: 502,
  /** Relay: nothing listens on the port (in the computer, or on the tunnel's host). */
  PORT_NOT_LISTENING: 502,
  /** Relay: the app's connection failed or closed without an answer. */
  UPSTREAM_ERROR: 502,
  /** Desktop: the daemon inside the computer cannot do what was asked (a bug, a broken X server). */
  DESKTOP_UNAVAILABLE: 502,
  NO_CAPACITY: 503,
  /** Desktop: still starting (the answer carries Retry-After). */
  DESKTOP_STARTING: 503,
  INSUFFICIENT_STORAGE: 507,
  /** Relay: a preview URL of a computer that is not running. */
  COMPUTER_STOPPED: 503,
  /** Relay: a tunnel whose host is offline. */
  HOST_OFFLINE: 503,
  /** An inference cluster that its tenant stopped: its URL answers again after start. */
  CLUSTER_STOPPED: 503,
  /** Relay: the app did not answer in time. */
  UPSTREAM_TIMEOUT: 504,
  /** A sync command started and its result is not known yet (its host agent is away): retry with the same Idempotency-Key. */
  RESULT_PENDING: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** Headers every error of a code carries: when to ask again. */
const CODE_HEADERS: Partial<Record<ErrorCode, Record<string, string>>> = {
  // A computer stops or a host comes online any time; half a minute is a fair first wait.
  NO_CAPACITY: { 'retry-after': '30' },
};

/** Thrown by route handlers and middleware; rendered as the error envelope. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly headers: Record<string, string>;
  constructor(code: ErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.code = code;
    this.headers = { ...CODE_HEADERS[code], ...headers };
    this.status = ERROR_STATUS[code];
  }
}

/** What Durable Object RPC methods return instead of throwing: a thrown error crossing RPC keeps only its message. */
export type Result<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; message: string };

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = <T = never>(code: ErrorCode, message: string): Result<T> => ({ ok: false, code, message });

/** Unwraps a Result in a route handler, turning a failure back into an ApiError. */
export function unwrap<T>(result: Result<T>): T {
  if (!result.ok) throw new ApiError(result.code, result.message);
  return result.value;
}
