/**
 * A request to a tunnel, on its own host (`{slug}.t.{PREVIEW_DOMAIN}`) or
 * under `/t/{slug}` on the API host: find the tunnel its slug names, verify
 * what the caller shows (a Hangar credential, a tunnel cookie, what may be
 * the password), take Hangar's credentials off the request, and hand it to
 * the host's object, which decides from the tunnel's record who may use it
 * and relays it to the port on the host (durable-objects/relay/host-relay.ts).
 * Paths under `{base}/__hangar/` are Hangar's: a link's ticket and the login
 * form of a password tunnel.
 */
import { ApiError } from '../../schema/errors.ts';
import { edgeFailure } from '../preview/edge-failure.ts';
import type { Env } from '../env.ts';
import { newRequestId } from '../http/ids.ts';
import { clientAddress } from '../middleware/rate-limit.ts';
import { authenticateCredential, bearer } from '../middleware/auth.ts';
import { credentialOf } from '../computers/socket-auth.ts';
import { apiKeyLive } from '../tenancy/principals.ts';
import { RELAY_PATH, RELAY_REQUEST_HEADER, encodeRelayRequest, type TunnelCaller } from '../../durable-objects/relay/relay-request.ts';
import { forwardHeaders, isHangarCredential } from '../preview/forward-headers.ts';
import { wantsHtml } from '../preview/preview-pages.ts';
import { maxBodyBytes } from '../preview/preview.ts';
import { readCookies } from '../preview/preview-credentials.ts';
import { tunnelBySlug, type TunnelTarget } from './tunnel-lookup.ts';
import {
  TUNNEL_AUTH_PATH,
  TUNNEL_COOKIE,
  TUNNEL_COOKIE_TTL_S,
  TUNNEL_LOGIN_PATH,
  TUNNEL_RESERVED,
  mintTunnelCookie,
  passwordOf,
  tunnelCookie,
  verifyTunnelCookie,
  verifyTunnelTicket,
} from './tunnel-credentials.ts';

/** The tunnel a request is for: its slug, the base its URLs live under, and the path the app sees. */
export interface TunnelHit {
  slug: string;
  /** `/t/{slug}` on the API host, `` on the tunnel's own host. */
  base: string;
  /** Path and query for the app; null for the bare `/t/{slug}` (sent on to `/t/{slug}/`). */
  rest: string | null;
}

/** A login form is small; anything larger is not one. */
const LOGIN_FORM_MAX = 8 * 1024;

export const hostObject = (env: Env, hostId: string) => env.HOST.get(env.HOST.idFromName(hostId));

export async function handleTunnel(request: Request, env: Env, hit: TunnelHit): Promise<Response> {
  const requestId = newRequestId();
  try {
    return await serve(request, env, hit, requestId);
  } catch (err) {
    return edgeFailure(err, request, env, requestId, `tunnel ${hit.slug}`);
  }
}

async function serve(request: Request, env: Env, hit: TunnelHit, requestId: string): Promise<Response> {
  const url = new URL(request.url);
  if (hit.rest === null && (request.method === 'GET' || request.method === 'HEAD')) {
    // `/t/{slug}` → `/t/{slug}/`: relative links of the app's root page resolve inside the tunnel.
    return new Response(null, { status: 308, headers: { location: `${hit.base}/${url.search}`, 'cache-control': 'no-store' } });
  }
  const rest = hit.rest ?? `/${url.search}`;
  const tunnel = await tunnelBySlug(env, hit.slug);
  if (!tunnel) throw new ApiError('NOT_FOUND', `no tunnel is named ${hit.slug}`);
  const https = url.protocol === 'https:';
  const path = new URL(rest, 'https://tunnel.invalid').pathname;
  if (path === TUNNEL_AUTH_PATH) return redeemLink(env, url, tunnel, hit, https);
  if (path === TUNNEL_LOGIN_PATH && request.method === 'POST') return login(request, env, tunnel, hit, https, requestId);
  if (path.startsWith(TUNNEL_RESERVED)) throw new ApiError('NOT_FOUND', `${hit.base}${TUNNEL_RESERVED}… paths are reserved in tunnels`);

  const max = maxBodyBytes(env);
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > max) throw new ApiError('PAYLOAD_TOO_LARGE', `the request body is ${declared} bytes; at most ${max} bytes pass through a tunnel`);
  const hangarAuthorization = await isHangarCredential(env, request.headers.get('authorization'));
  const who = await callerOf(request, env, tunnel, hangarAuthorization);
  const websocket = request.headers.get('upgrade')?.toLowerCase() === 'websocket';
  const headers = forwardHeaders(request, url, { clientIp: clientAddress(request), dropAuthorization: hangarAuthorization, websocket });
  if (hit.base) headers.set('x-forwarded-prefix', hit.base);
  headers.set(
    RELAY_REQUEST_HEADER,
    encodeRelayRequest({
      kind: 'tunnel',
      tunnel_id: tunnel.id,
      host_id: tunnel.host_id,
      org_id: tunnel.org_id,
      slug: hit.slug,
      base: hit.base,
      path: rest,
      host: request.headers.get('host') ?? url.host,
      websocket,
      wants_html: wantsHtml(request),
      who,
      https,
      client: clientAddress(request).slice(0, 64),
      max_body: max,
      request_id: requestId,
    }),
  );
  const hasBody = request.method !== 'GET' && request.method !== 'HEAD' && request.body !== null;
  return hostObject(env, tunnel.host_id).fetch(new Request(`https://relay${RELAY_PATH}`, { method: request.method, headers, body: hasBody ? request.body : null, redirect: 'manual' }));
}

/** What the caller shows, verified here (signatures, keys); the host's object matches it against the tunnel. */
async function callerOf(request: Request, env: Env, t: TunnelTarget, hangarAuthorization: boolean): Promise<TunnelCaller> {
  let tenant: TunnelCaller['tenant'] = null;
  let foreign = false;
  if (hangarAuthorization) {
    // A Hangar credential that does not authenticate (revoked, a stream token) makes the caller anonymous: it is dropped either way.
    const principal = await authenticateCredential(env, bearer(request)!).catch((e: unknown) => {
      if (e instanceof ApiError && e.code === 'UNAUTHORIZED') return null;
      throw e;
    });
    // Hosts belong to their organization: every credential of it reaches its tunnels.
    if (principal && principal.org_id === t.org_id) tenant = { credential_id: credentialOf(principal) };
    else if (principal) foreign = true;
  }
  const raw = readCookies(request.headers.get('cookie')).get(TUNNEL_COOKIE);
  const grant = raw ? await verifyTunnelCookie(env, raw, t.id) : null;
  const cookie: TunnelCaller['cookie'] =
    grant?.kind === 'tenant' ? { kind: 'tenant', credential_id: grant.credential_id } : grant?.kind === 'password' ? { kind: 'password', version: grant.version } : null;
  // Only a password tunnel takes it (its object decides); for others HTTP Basic is the app's own and passes.
  const password = passwordOf(request.headers);
  return { tenant, foreign, cookie, ...(password !== undefined ? { password } : {}) };
}

/** `{base}/__hangar/auth?ticket=…&next=/…`: a minted link, used once, becomes the tunnel cookie. */
async function redeemLink(env: Env, url: URL, t: TunnelTarget, hit: TunnelHit, https: boolean): Promise<Response> {
  const ticket = url.searchParams.get('ticket');
  const grant = ticket ? await verifyTunnelTicket(env, ticket, t.id) : null;
  const again = `mint a new one with POST /api/v1/opencomputers/hosts/{id}/tunnels/${t.id}/link`;
  if (!grant || grant.kind !== 'tenant' || !grant.jti) throw new ApiError('UNAUTHORIZED', `this link is invalid or has expired; ${again}`);
  if (grant.credential_id && !(await apiKeyLive(env, grant.credential_id, { fresh: true }))) throw new ApiError('UNAUTHORIZED', `the API key that minted this link was revoked; ${again}`);
  const redeemed = await hostObject(env, t.host_id).redeemTunnelTicket(t.id, grant.jti, grant.exp);
  if (redeemed === 'not_found') throw new ApiError('NOT_FOUND', `no tunnel is named ${hit.slug}`);
  if (redeemed === 'used') throw new ApiError('UNAUTHORIZED', `this link was already used; ${again}`);
  const cookie = await mintTunnelCookie(env, t.id, { kind: 'tenant', kid: grant.credential_id });
  const headers = new Headers({ location: hit.base + safeNext(url.searchParams.get('next')), 'cache-control': 'no-store' });
  headers.append('set-cookie', tunnelCookie(cookie.token, hit.base, TUNNEL_COOKIE_TTL_S, https));
  return new Response(null, { status: 302, headers });
}

/** `POST {base}/__hangar/login` from the login page: the host's object checks the password. */
async function login(request: Request, env: Env, t: TunnelTarget, hit: TunnelHit, https: boolean, requestId: string): Promise<Response> {
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > LOGIN_FORM_MAX) throw new ApiError('PAYLOAD_TOO_LARGE', 'a login form is at most 8 KiB');
  const text = await new Response(request.body).text();
  if (text.length > LOGIN_FORM_MAX) throw new ApiError('PAYLOAD_TOO_LARGE', 'a login form is at most 8 KiB');
  const form = new URLSearchParams(text);
  const headers = new Headers({ 'x-request-id': requestId, accept: request.headers.get('accept') ?? 'text/html' });
  headers.set(
    RELAY_REQUEST_HEADER,
    encodeRelayRequest({
      kind: 'tunnel_login',
      tunnel_id: t.id,
      host_id: t.host_id,
      org_id: t.org_id,
      slug: hit.slug,
      base: hit.base,
      next: safeNext(form.get('next')),
      password: (form.get('password') ?? '').slice(0, 1024),
      https,
      client: clientAddress(request).slice(0, 64),
      request_id: requestId,
    }),
  );
  return hostObject(env, t.host_id).fetch(new Request(`https://relay${RELAY_PATH}`, { method: 'POST', headers, redirect: 'manual' }));
}

/** A path inside the tunnel only: no scheme, no `//host`, no backslash tricks. */
function safeNext(next: string | null): string {
  return next && /^\/(?![/\\])/.test(next) && !/[\r\n]/.test(next) && next.length <= 2048 ? next : '/';
}
