/**
 * CORS: the API is called from browsers too (EventSource, terminals, SDKs in
 * web apps). Credentials are bearer tokens in headers or tickets in URLs,
 * never cookies, so any origin may call it.
 */
const ALLOW_HEADERS = 'Authorization, Content-Type, Idempotency-Key, Last-Event-ID';
const EXPOSE_HEADERS = 'X-Request-Id, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, Idempotent-Replayed';

/** The answer to a preflight request. */
export function preflight(): Response {
  return new Response(null, {
    status: 204,
    headers: {
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
      'access-control-allow-headers': ALLOW_HEADERS,
      'access-control-max-age': '86400',
    },
  });
}

/** Headers every other response carries (set on a mutable response). */
export function corsHeaders(headers: Headers): void {
  headers.set('access-control-allow-origin', '*');
  headers.set('access-control-expose-headers', EXPOSE_HEADERS);
}
