/** Building responses: JSON bodies, the error envelope, and the request id header every response carries. */
import { ApiError } from '../../schema/errors.ts';
import { corsHeaders } from './cors.ts';

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
}

/** The one error envelope: `{error:{code,message,request_id}}`. */
export function errorResponse(err: unknown, requestId: string): Response {
  if (err instanceof ApiError) {
    return json({ error: { code: err.code, message: err.message, request_id: requestId } }, err.status, err.headers);
  }
  console.error(`[${requestId}] unhandled error`, err);
  return json(
    { error: { code: 'INTERNAL', message: 'Internal error; include the request_id when reporting it.', request_id: requestId } },
    500,
  );
}

/** Adds X-Request-Id and the CORS headers, copying the response when its headers are immutable (fetched or upgraded responses). */
export function withRequestId(res: Response, requestId: string): Response {
  try {
    res.headers.set('x-request-id', requestId);
    corsHeaders(res.headers);
    return res;
  } catch {
    const copy = new Response(res.body, { status: res.status, statusText: res.statusText, headers: res.headers, webSocket: res.webSocket });
    copy.headers.set('x-request-id', requestId);
    corsHeaders(copy.headers);
    return copy;
  }
}
