/**
 * Requests to a computer's own host (`<slug>.<COMPUTER_DOMAIN>`, see
 * worker/computers/urls.ts): the desktop viewer page and its VNC socket.
 *
 *   GET  /desktop/index.html         the viewer page (desktop_url)
 *   GET  /desktop/viewer-<v>.js      its script (noVNC inside), cached for good
 *   POST /desktop/session            a link's stream token → a viewer session (reconnects for 12 h)
 *   GET  /ws/vnc/<id>                RFB over WebSocket: with ?auth= (stream or viewer token) straight
 *                                    to the desktop; without, the viewer password is asked (VNC auth)
 *
 * Nothing here trusts the host name for access: tokens are bound to the
 * computer's id and organization, and the password is checked by the
 * computer's own object. The host only names which computer a page is for.
 */
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { errorResponse, json, withRequestId } from '../http/responses.ts';
import { isUuid, newRequestId } from '../http/ids.ts';
import { parseJson, readBodyText, validate } from '../http/body.ts';
import { RATE_LIMITS, clientAddress, enforceRateLimit } from '../middleware/rate-limit.ts';
import { computerStub } from '../computers/access.ts';
import { verifyStreamToken } from '../computers/stream-token.ts';
import { computerOfHost } from '../computers/urls.ts';
import { computerBySlug } from '../preview/preview-lookup.ts';
import { vncSocketUrl } from './desktop-urls.ts';
import { mintViewerToken, verifyViewerToken, type ViewerClaims } from './viewer-session.ts';
import { VIEWER_SCRIPT_PATH, viewerPage, viewerScript } from '../desktop-page/page.ts';
import { DESKTOP_VIEWER_HEADER, DESKTOP_VIEWER_PATH, encodeViewerRequest } from '../../durable-objects/desktop/viewer-request.ts';

/** The computer a host names, or null (then everything on it is a 404). */
async function hostComputer(env: Env, host: string) {
  const who = computerOfHost(host, env);
  return who ? computerBySlug(env, who.slug) : null;
}

/** Claims of a stream token or viewer token valid for this computer (and its key not revoked); null when neither. */
async function tokenClaims(env: Env, token: string, computerId: string): Promise<ViewerClaims | null> {
  return (await verifyViewerToken(env, token, computerId)) ?? (await verifyStreamToken(env, token, computerId));
}

const SessionBody = z.object({ computer_id: z.string().max(64), token: z.string().min(1).max(4096) });

const notFound = () => new ApiError('NOT_FOUND', 'no desktop here');

/**
 * A computer's own host as a host route: its match (the host names a
 * computer) and its answer, with a request id and the error envelope like the
 * API's.
 */
export const desktopHostRoute = {
  match: (host: string | null, env: Env) => (host ? computerOfHost(host, env) : null),
  async handle(request: Request, env: Env): Promise<Response> {
    const requestId = newRequestId();
    let res: Response;
    try {
      res = await handleDesktopHost(request, env, requestId);
    } catch (err) {
      res = errorResponse(err, requestId);
    }
    return withRequestId(res, requestId);
  },
};

async function handleDesktopHost(request: Request, env: Env, requestId: string): Promise<Response> {
  const url = new URL(request.url);
  const path = url.pathname;
  if (request.method === 'GET' && path === VIEWER_SCRIPT_PATH) return viewerScript();
  await enforceRateLimit(env, `ip:${clientAddress(request)}`, RATE_LIMITS.public);
  const computer = await hostComputer(env, url.host);
  if (!computer) throw notFound();

  if (request.method === 'GET' && (path === '/desktop' || path === '/desktop/' || path === '/')) {
    return new Response(null, { status: 302, headers: { location: `/desktop/index.html${url.search}` } });
  }
  if (request.method === 'GET' && path === '/desktop/index.html') return viewerPage(computer.id);

  if (request.method === 'POST' && path === '/desktop/session') {
    const body = validate(SessionBody, parseJson(await readBodyText(request, 8192)));
    if (body.computer_id !== computer.id) throw new ApiError('UNAUTHORIZED', 'this link is for another computer');
    // Only a link's stream token starts a session: a session cannot lengthen itself.
    const grant = await verifyStreamToken(env, body.token, computer.id);
    if (!grant || grant.org_id !== computer.org_id) throw new ApiError('UNAUTHORIZED', 'the link has expired or is not valid; get a fresh one from vnc-credentials, urls or embed');
    // The session speaks for the same API key as the link: revoking the key ends both.
    const { token, expires_at } = await mintViewerToken(env, grant, computer.id);
    return json({ ws_url: vncSocketUrl(computer, env, token), expires_at, computer_id: computer.id });
  }

  const ws = /^\/ws\/vnc\/([^/]+)$/.exec(path);
  if (request.method === 'GET' && ws) {
    if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') throw new ApiError('BAD_REQUEST', 'this endpoint takes a WebSocket upgrade (RFB over WebSocket)');
    if (!isUuid(ws[1]) || ws[1].toLowerCase() !== computer.id) throw notFound();
    const token = url.searchParams.get('auth') ?? url.searchParams.get('token');
    let open;
    if (token === null) {
      open = encodeViewerRequest({ mode: 'password' });
    } else {
      const claims = await tokenClaims(env, token, computer.id);
      if (!claims || claims.org_id !== computer.org_id) throw new ApiError('UNAUTHORIZED', 'invalid or expired token; get a fresh one from POST …/stream-token');
      open = encodeViewerRequest({ mode: 'token', caller: { org_id: claims.org_id, workspace_ids: null, project_ids: null, credential_id: claims.credential_id } });
    }
    const headers = new Headers({ upgrade: 'websocket', 'x-request-id': requestId, [DESKTOP_VIEWER_HEADER]: open });
    return computerStub(env, computer.id).fetch(new Request(`https://desktop${DESKTOP_VIEWER_PATH}`, { headers }));
  }
  throw notFound();
}
