/**
 * A request to a preview host: find the computer its slug names, verify what
 * the caller shows (a Hangar credential, a preview cookie, what may be the
 * port's token), take Hangar's credentials off the request, and hand it to
 * the computer's object, which decides from the port's record who may use it
 * (preview-auth.ts) and relays it to the port inside the computer
 * (durable-objects/relay/http.ts). The object's answer — the app's response,
 * or a page saying why there is none — goes back as it is.
 */
import { ApiError } from '../../schema/errors.ts';
import { edgeFailure } from './edge-failure.ts';
import type { Env } from '../env.ts';
import { newRequestId } from '../http/ids.ts';
import { clientAddress } from '../middleware/rate-limit.ts';
import { authenticateCredential, bearer } from '../middleware/auth.ts';
import { inScope } from '../middleware/principal.ts';
import { computerStub } from '../computers/access.ts';
import { apiKeyLive } from '../tenancy/principals.ts';
import { credentialOf } from '../computers/socket-auth.ts';
import { RELAY_PATH, RELAY_REQUEST_HEADER, encodeRelayRequest, type PreviewCaller } from '../../durable-objects/relay/relay-request.ts';
import { AUTH_PATH, COOKIE_TTL_S, PREVIEW_COOKIE, RESERVED_PREFIX, TOKEN_COOKIE, TOKEN_HEADER, mintPreviewCookie, readCookies, setCookie, verifyLinkTicket, verifyPreviewCookie } from './preview-credentials.ts';
import { forwardHeaders, isHangarCredential } from './forward-headers.ts';
import { computerBySlug, type PreviewComputer } from './preview-lookup.ts';
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
    return edgeFailure(err, request, env, requestId, `preview ${target.port}-${target.slug}`);
  }
}

async function serve(request: Request, env: Env, url: URL, target: PreviewTarget, requestId: string): Promise<Response> {
  const computer = await computerBySlug(env, target.slug);
  if (!computer) throw new ApiError('NOT_FOUND', `no computer has the preview name ${target.slug}`);
  if (url.pathname === AUTH_PATH) return redeemLink(env, url, computer, target.port);
  if (url.pathname.startsWith(RESERVED_PREFIX)) throw new ApiError('NOT_FOUND', `${RESERVED_PREFIX}… paths are reserved on preview hosts`);
  const max = maxBodyBytes(env);
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > max) throw new ApiError('PAYLOAD_TOO_LARGE', `the request body is ${declared} bytes; at most ${max} bytes pass to a port`);
  const hangarAuthorization = await isHangarCredential(env, request.headers.get('authorization'));
  const who = await callerOf(request, env, computer, target.port, hangarAuthorization);
  const websocket = request.headers.get('upgrade')?.toLowerCase() === 'websocket';
  const headers = forwardHeaders(request, url, { clientIp: clientAddress(request), dropAuthorization: hangarAuthorization, websocket });
  headers.set(
    RELAY_REQUEST_HEADER,
    encodeRelayRequest({
      kind: 'http',
      port: target.port,
      path: url.pathname + url.search,
      websocket,
      who,
      https: url.protocol === 'https:',
      max_body: max,
      request_id: requestId,
      slug: computer.slug,
    }),
  );
  const hasBody = request.method !== 'GET' && request.method !== 'HEAD' && request.body !== null;
  return computerStub(env, computer.id).fetch(new Request(`https://relay${RELAY_PATH}`, { method: request.method, headers, body: hasBody ? request.body : null, redirect: 'manual' }));
}

/** What the caller shows, verified here (signatures, keys); the object matches it against the port. */
async function callerOf(request: Request, env: Env, c: PreviewComputer, port: number, hangarAuthorization: boolean): Promise<PreviewCaller> {
  let tenant: PreviewCaller['tenant'] = null;
  let foreign = false;
  if (hangarAuthorization) {
    // A Hangar credential that does not authenticate (revoked, a stream token) makes the caller anonymous: it is dropped either way.
    const principal = await authenticateCredential(env, bearer(request)!).catch((e: unknown) => {
      if (e instanceof ApiError && e.code === 'UNAUTHORIZED') return null;
      throw e;
    });
    if (principal && principal.org_id === c.org_id && inScope(principal, c.workspace_id, c.project_id)) tenant = { credential_id: credentialOf(principal) };
    else if (principal) foreign = true;
  }
  const cookies = readCookies(request.headers.get('cookie'));
  const raw = cookies.get(PREVIEW_COOKIE);
  const grant = raw ? await verifyPreviewCookie(env, raw, c.id, port) : null;
  const token = new URL(request.url).searchParams.get('token') ?? undefined;
  return {
    tenant,
    foreign,
    cookie: grant && grant.org_id === c.org_id ? { credential_id: grant.credential_id } : null,
    tokens: { query: token?.slice(0, 512), header: request.headers.get(TOKEN_HEADER)?.slice(0, 512), cookie: cookies.get(TOKEN_COOKIE)?.slice(0, 512) },
  };
}

/** `/__hangar/auth?ticket=…&next=/…`: a minted link, used once, becomes the preview cookie. */
async function redeemLink(env: Env, url: URL, c: PreviewComputer, port: number): Promise<Response> {
  const ticket = url.searchParams.get('ticket');
  const grant = ticket ? await verifyLinkTicket(env, ticket, c.id, port) : null;
  const again = `mint a new one with POST /api/v1/computers/{id}/ports/${port}/link`;
  if (!grant || grant.org_id !== c.org_id || !grant.jti) throw new ApiError('UNAUTHORIZED', `this link is invalid or has expired; ${again}`);
  if (grant.credential_id && !(await apiKeyLive(env, grant.credential_id, { fresh: true }))) throw new ApiError('UNAUTHORIZED', `the API key that minted this link was revoked; ${again}`);
  const redeemed = await computerStub(env, c.id).redeemPreviewTicket(grant.jti, grant.exp, port);
  if (redeemed === 'not_exposed') throw new ApiError('NOT_FOUND', `port ${port} of computer ${c.slug} is not exposed`);
  if (redeemed === 'used') throw new ApiError('UNAUTHORIZED', `this link was already used; ${again}`);
  const cookie = await mintPreviewCookie(env, { computer_id: c.id, port, org_id: c.org_id, credential_id: grant.credential_id });
  const headers = new Headers({ location: safeNext(url.searchParams.get('next')), 'cache-control': 'no-store' });
  headers.append('set-cookie', setCookie(PREVIEW_COOKIE, cookie.token, COOKIE_TTL_S, url.protocol === 'https:'));
  return new Response(null, { status: 302, headers });
}

/** A path on this host only: no scheme, no `//host`, no backslash tricks. */
function safeNext(next: string | null): string {
  return next && /^\/(?![/\\])/.test(next) && !/[\r\n]/.test(next) ? next : '/';
}
