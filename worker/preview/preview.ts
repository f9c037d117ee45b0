/**
 * A request to a preview host: find the computer and its port record, check
 * who may use the port, take Hangar's credentials off the request, and hand
 * it to the computer's object, which relays it to the port inside the
 * computer (durable-objects/relay/http.ts). The object's answer — the app's
 * response, or a page saying why there is none — goes back as it is.
 */
import { decodeJwt } from 'jose';
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { newRequestId } from '../http/ids.ts';
import { clientAddress, enforceRateLimit, RATE_LIMITS } from '../middleware/rate-limit.ts';
import { computerStub } from '../computers/access.ts';
import { RELAY_PATH, RELAY_REQUEST_HEADER, encodeRelayRequest } from '../../durable-objects/relay/relay-request.ts';
import { authorizePreview, notExposed } from './preview-auth.ts';
import { AUTH_PATH, COOKIE_TTL_S, PREVIEW_COOKIE, RESERVED_PREFIX, mintPreviewCookie, readCookies, setCookie, verifyLinkTicket } from './preview-credentials.ts';
import { forwardHeaders, isHangarCredential } from './forward-headers.ts';
import { lookupPreview, type PreviewRecord } from './preview-lookup.ts';
import { previewError } from './preview-pages.ts';
import type { PreviewTarget } from './preview-host.ts';

/** Cloudflare's request body limit on the Free and Pro plans; operators on larger plans raise RELAY_MAX_BODY_BYTES. */
export const DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024;

export const maxBodyBytes = (env: Env): number => {
  const n = Number(env.RELAY_MAX_BODY_BYTES);
  return Number.isSafeInteger(n) && n > 0 ? n : DEFAULT_MAX_BODY_BYTES;
};

export async function handlePreview(request: Request, env: Env, target: PreviewTarget): Promise<Response> {
  const requestId = newRequestId();
  const url = new URL(request.url);
  try {
    return await serve(request, env, url, target, requestId);
  } catch (err) {
    let e: ApiError;
    if (err instanceof ApiError) e = err;
    else {
      console.error(`[${requestId}] preview ${target.port}-${target.slug}`, err);
      e = new ApiError('INTERNAL', 'Internal error; include the request_id when reporting it.');
    }
    // Failed credentials are unauthenticated traffic: they count against the client's address.
    if (e.code === 'UNAUTHORIZED') {
      try {
        await enforceRateLimit(env, `ip:${clientAddress(request)}`, RATE_LIMITS.public);
      } catch (limited) {
        if (limited instanceof ApiError) e = limited;
      }
    }
    return previewError(e, request, requestId);
  }
}

async function serve(request: Request, env: Env, url: URL, target: PreviewTarget, requestId: string): Promise<Response> {
  const rec = await lookupPreview(env, target.slug, target.port, keyOfCookie(request));
  if (!rec) throw new ApiError('NOT_FOUND', `no computer has the preview name ${target.slug}`);
  if (url.pathname === AUTH_PATH) return redeemLink(env, url, rec, target.port);
  if (url.pathname.startsWith(RESERVED_PREFIX)) throw new ApiError('NOT_FOUND', `${RESERVED_PREFIX}… paths are reserved on preview hosts`);
  const hangarAuthorization = await isHangarCredential(env, request.headers.get('authorization'));
  const access = await authorizePreview(request, env, url, rec, target.port, hangarAuthorization);
  if (access.kind === 'respond') return access.response;
  const max = maxBodyBytes(env);
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > max) throw new ApiError('PAYLOAD_TOO_LARGE', `the request body is ${declared} bytes; at most ${max} bytes pass to a port`);
  const websocket = request.headers.get('upgrade')?.toLowerCase() === 'websocket';
  const headers = forwardHeaders(request, url, { clientIp: clientAddress(request), dropAuthorization: hangarAuthorization, websocket });
  headers.set(
    RELAY_REQUEST_HEADER,
    encodeRelayRequest({
      kind: 'http',
      port: target.port,
      path: access.path,
      websocket,
      credential_id: access.credential_id,
      wake: rec.port!.wake,
      max_body: max,
      request_id: requestId,
      where: `port ${target.port} of computer ${rec.slug}`,
    }),
  );
  const hasBody = request.method !== 'GET' && request.method !== 'HEAD' && request.body !== null;
  return computerStub(env, rec.id).fetch(new Request(`https://relay${RELAY_PATH}`, { method: request.method, headers, body: hasBody ? request.body : null, redirect: 'manual' }));
}

/** The API key a preview cookie names, read unverified: it only picks which key the lookup checks. */
function keyOfCookie(request: Request): string | null {
  const raw = readCookies(request.headers.get('cookie')).get(PREVIEW_COOKIE);
  if (!raw) return null;
  try {
    const kid = decodeJwt(raw).kid;
    return typeof kid === 'string' ? kid : null;
  } catch {
    return null;
  }
}

/** `/__hangar/auth?ticket=…&next=/…`: a minted link, used once, becomes the preview cookie. */
async function redeemLink(env: Env, url: URL, rec: PreviewRecord, port: number): Promise<Response> {
  if (!rec.port) throw notExposed(rec, port);
  const ticket = url.searchParams.get('ticket');
  const grant = ticket ? await verifyLinkTicket(env, ticket, rec.id, port) : null;
  const again = `mint a new one with POST /api/v1/computers/{id}/ports/${port}/link`;
  if (!grant || grant.org_id !== rec.org_id || !grant.jti) throw new ApiError('UNAUTHORIZED', `this link is invalid or has expired; ${again}`);
  if (grant.credential_id && !(await keyIsLive(env, grant.credential_id))) throw new ApiError('UNAUTHORIZED', `the API key that minted this link was revoked; ${again}`);
  if (!(await computerStub(env, rec.id).redeemPreviewTicket(grant.jti, grant.exp))) throw new ApiError('UNAUTHORIZED', `this link was already used; ${again}`);
  const cookie = await mintPreviewCookie(env, { computer_id: rec.id, port, org_id: rec.org_id, credential_id: grant.credential_id });
  const headers = new Headers({ location: safeNext(url.searchParams.get('next')), 'cache-control': 'no-store' });
  headers.append('set-cookie', setCookie(PREVIEW_COOKIE, cookie.token, COOKIE_TTL_S, url.protocol === 'https:'));
  return new Response(null, { status: 302, headers });
}

/** A path on this host only: no scheme, no `//host`, no backslash tricks. */
function safeNext(next: string | null): string {
  return next && /^\/(?![/\\])/.test(next) && !/[\r\n]/.test(next) ? next : '/';
}

async function keyIsLive(env: Env, keyId: string): Promise<boolean> {
  return (await env.DB.prepare('SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL').bind(keyId).first()) !== null;
}
