/**
 * Who may use an exposed port, decided per request from the port's current
 * visibility (so a change applies to the next request):
 *  - public: anyone;
 *  - private: the computer's tenant — an API key (or tenant JWT) of its
 *    organization in Authorization, or the preview cookie a minted link sets;
 *  - protected: whoever holds the port's access token — `?token=` (a browser
 *    is sent on without it, the token kept in a cookie), the token header or
 *    that cookie; the tenant's own key works too.
 * A credential of another organization gets the same 404 as a port that is
 * not exposed.
 */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { authenticateCredential, bearer } from '../middleware/auth.ts';
import { inScope } from '../middleware/principal.ts';
import { credentialOf } from '../computers/socket-auth.ts';
import { secretsEqual } from '../tenancy/keys.ts';
import { PREVIEW_COOKIE, TOKEN_COOKIE, TOKEN_HEADER, COOKIE_TTL_S, readCookies, setCookie, verifyPreviewCookie } from './preview-credentials.ts';
import type { PreviewRecord } from './preview-lookup.ts';
import { readPortToken } from './port-tokens.ts';

export type Access =
  /** Go on to the app; `path` is what the app sees (without a consumed ?token=). */
  | { kind: 'allow'; credential_id: string | null; path: string; via: 'public' | 'key' | 'cookie' | 'token' }
  /** Answer this instead (a redirect that stores a token in a cookie). */
  | { kind: 'respond'; response: Response };

/** The 404 of a port that is not there for this caller. */
export const notExposed = (rec: PreviewRecord, port: number): ApiError =>
  new ApiError('NOT_FOUND', `port ${port} of computer ${rec.slug} is not exposed (POST /api/v1/computers/{id}/ports exposes it)`);

export async function authorizePreview(request: Request, env: Env, url: URL, rec: PreviewRecord, port: number, hangarAuthorization: boolean): Promise<Access> {
  const p = rec.port;
  if (!p) throw notExposed(rec, port);
  const path = url.pathname + url.search;
  if (p.visibility === 'public') return { kind: 'allow', credential_id: null, path, via: 'public' };

  // The tenant's own credential opens private and protected ports alike.
  if (hangarAuthorization) {
    const principal = await authenticateCredential(env, bearer(request)!);
    if (principal.org_id !== rec.org_id || !inScope(principal, rec.workspace_id, rec.project_id)) throw notExposed(rec, port);
    return { kind: 'allow', credential_id: credentialOf(principal), path, via: 'key' };
  }
  const cookies = readCookies(request.headers.get('cookie'));

  if (p.visibility === 'private') {
    const raw = cookies.get(PREVIEW_COOKIE);
    const grant = raw ? await verifyPreviewCookie(env, raw, rec.id, port) : null;
    if (grant && grant.org_id === rec.org_id && (grant.credential_id === null || rec.key_live === true)) {
      return { kind: 'allow', credential_id: grant.credential_id, path, via: 'cookie' };
    }
    throw new ApiError(
      'UNAUTHORIZED',
      `port ${port} of computer ${rec.slug} is private: send an API key of its organization as Authorization: Bearer, or open a link from POST /api/v1/computers/{id}/ports/${port}/link`,
    );
  }

  // Protected.
  const token = p.token_ciphertext && p.token_iv ? await readPortToken(env, rec.id, port, p.token_ciphertext, p.token_iv) : null;
  const matches = async (given: string | null | undefined) => !!token && !!given && (await secretsEqual(given, token));
  const fromQuery = url.searchParams.get('token');
  if (fromQuery !== null && (await matches(fromQuery))) {
    const rest = new URL(url);
    rest.searchParams.delete('token');
    const restPath = rest.pathname + rest.search;
    if (request.method === 'GET' || request.method === 'HEAD') {
      // A browser keeps the token in a cookie of this host and goes on without it in the address.
      const headers = new Headers({ location: restPath, 'cache-control': 'no-store' });
      headers.append('set-cookie', setCookie(TOKEN_COOKIE, fromQuery, COOKIE_TTL_S, url.protocol === 'https:'));
      return { kind: 'respond', response: new Response(null, { status: 302, headers }) };
    }
    return { kind: 'allow', credential_id: null, path: restPath, via: 'token' };
  }
  if ((await matches(request.headers.get(TOKEN_HEADER))) || (await matches(cookies.get(TOKEN_COOKIE)))) {
    return { kind: 'allow', credential_id: null, path, via: 'token' };
  }
  throw new ApiError('UNAUTHORIZED', `port ${port} of computer ${rec.slug} is protected: give its access token as ?token= or in the ${TOKEN_HEADER} header`);
}
