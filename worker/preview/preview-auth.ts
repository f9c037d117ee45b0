/**
 * Who may use an exposed port, decided per request from the port's record as
 * its computer's object holds it (so a change applies to the next request):
 *  - public: anyone;
 *  - private: the computer's tenant — an API key (or tenant JWT) of its
 *    organization in Authorization, or the preview cookie a minted link sets;
 *  - protected: whoever holds the port's access token — `?token=` (a browser
 *    is sent on without it, the token kept in a cookie), the token header or
 *    that cookie; the tenant's own key works too.
 * A credential of another organization gets the same 404 as a port that is
 * not exposed. The Worker verifies what the caller showed (preview.ts); this
 * decides, without I/O but for the liveness of a cookie's API key.
 */
import { ApiError } from '../../schema/errors.ts';
import type { PortVisibility } from '../../schema/api.ts';
import type { PreviewCaller } from '../../durable-objects/relay/relay-request.ts';
import { COOKIE_TTL_S, TOKEN_COOKIE, TOKEN_HEADER, setCookie } from './preview-credentials.ts';

/** A port's record as access needs it (the token in the clear). */
export interface PortAccess {
  visibility: PortVisibility;
  token: string | null;
}

export type Access =
  /** Go on to the app; `path` is what the app sees (without a consumed ?token=). */
  | { kind: 'allow'; credential_id: string | null; path: string }
  /** Answer this instead (a redirect that keeps a token in a cookie). */
  | { kind: 'respond'; response: Response };

export interface AccessRequest {
  port: number;
  slug: string;
  method: string;
  path: string;
  https: boolean;
  who: PreviewCaller;
}

/** The 404 of a port that is not there for this caller. */
export const notExposed = (slug: string, port: number): ApiError =>
  new ApiError('NOT_FOUND', `port ${port} of computer ${slug} is not exposed (POST /api/v1/computers/{id}/ports exposes it)`);

/** Compares in constant time for equal lengths (a token's length is no secret: they all have one). */
function sameToken(given: string | undefined, token: string | null): boolean {
  if (!given || !token || given.length !== token.length) return false;
  let diff = 0;
  for (let i = 0; i < token.length; i++) diff |= given.charCodeAt(i) ^ token.charCodeAt(i);
  return diff === 0;
}

export async function decideAccess(port: PortAccess | null, r: AccessRequest, keyLive: (keyId: string) => Promise<boolean>): Promise<Access> {
  if (!port || r.who.foreign) throw notExposed(r.slug, r.port);
  if (port.visibility === 'public') return { kind: 'allow', credential_id: r.who.tenant?.credential_id ?? null, path: r.path };
  if (r.who.tenant) return { kind: 'allow', credential_id: r.who.tenant.credential_id, path: r.path };

  if (port.visibility === 'private') {
    const c = r.who.cookie;
    if (c && (c.credential_id === null || (await keyLive(c.credential_id)))) return { kind: 'allow', credential_id: c.credential_id, path: r.path };
    throw new ApiError(
      'UNAUTHORIZED',
      `port ${r.port} of computer ${r.slug} is private: send an API key of its organization as Authorization: Bearer, or open a link from POST /api/v1/computers/{id}/ports/${r.port}/link`,
    );
  }

  // Protected.
  const { tokens } = r.who;
  if (sameToken(tokens.query, port.token)) {
    const url = new URL(r.path, 'https://preview.invalid');
    url.searchParams.delete('token');
    const rest = url.pathname + url.search;
    if (r.method === 'GET' || r.method === 'HEAD') {
      // A browser keeps the token in a cookie of this host and goes on without it in the address.
      const headers = new Headers({ location: rest, 'cache-control': 'no-store' });
      headers.append('set-cookie', setCookie(TOKEN_COOKIE, tokens.query!, COOKIE_TTL_S, r.https));
      return { kind: 'respond', response: new Response(null, { status: 302, headers }) };
    }
    return { kind: 'allow', credential_id: null, path: rest };
  }
  if (sameToken(tokens.header, port.token) || sameToken(tokens.cookie, port.token)) return { kind: 'allow', credential_id: null, path: r.path };
  throw new ApiError('UNAUTHORIZED', `port ${r.port} of computer ${r.slug} is protected: give its access token as ?token= or in the ${TOKEN_HEADER} header`);
}
