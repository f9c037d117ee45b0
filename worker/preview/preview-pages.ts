/**
 * Answers of preview hosts that are Hangar's rather than the app's (refusals,
 * nothing listening, a stopped computer): an HTML page for browsers, the
 * usual error envelope for everyone else. No CORS headers of ours: on a
 * preview host those are the app's business.
 */
import { ApiError } from '../../schema/errors.ts';
import { json } from '../http/responses.ts';

/** True for a browser navigation (it asks for HTML first). */
export function wantsHtml(request: Request): boolean {
  const accept = request.headers.get('accept') ?? '';
  return /text\/html/i.test(accept) && !/^\s*application\/json/i.test(accept);
}

const TITLES: Record<number, string> = { 401: 'Sign-in needed', 403: 'Not allowed', 404: 'Not found', 413: 'Too large', 429: 'Slow down', 502: 'Nothing answered', 503: 'Not running', 504: 'No answer in time' };

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The error as a page or an envelope, with X-Request-Id. */
export function previewError(err: ApiError, request: Request, requestId: string): Response {
  const headers = { 'x-request-id': requestId, 'cache-control': 'no-store', ...err.headers };
  if (!wantsHtml(request)) {
    const res = json({ error: { code: err.code, message: err.message, request_id: requestId } }, err.status, headers);
    return res;
  }
  const title = TITLES[err.status] ?? 'Error';
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${err.status} ${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:12vh auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}code{background:#f2f2f2;padding:.1em .3em;border-radius:3px}small{color:#777}</style>
</head><body><h1>${err.status} ${escapeHtml(title)}</h1><p>${escapeHtml(err.message)}</p><p><small>${escapeHtml(err.code)} · request ${escapeHtml(requestId)}</small></p></body></html>
`;
  return new Response(body, { status: err.status, headers: { ...headers, 'content-type': 'text/html; charset=utf-8' } });
}
