/**
 * Who may use a tunnel, decided per request from the tunnel's record as its
 * host's object holds it (so a change applies to the next request):
 *  - public: anyone;
 *  - tenant_only: the host's organization — an API key (or tenant JWT) of it
 *    in Authorization, or the tunnel cookie a minted link sets;
 *  - password: whoever gives the password — the login page's cookie in a
 *    browser, TUNNEL_PASSWORD_HEADER or HTTP Basic from API clients; the
 *    tenant's own key works too.
 * A disabled tunnel, and a credential of another organization, get a 404
 * without the host being touched. The Worker verifies what the caller showed
 * (signatures, keys); this decides, with the password check and the liveness
 * of a cookie's API key supplied by the object.
 */
import { ApiError } from '../../schema/errors.ts';
import type { TunnelAuthMode } from '../../schema/tunnels.ts';
import { loginPage } from './tunnel-pages.ts';
import { TUNNEL_PASSWORD_HEADER } from './tunnel-credentials.ts';
import type { TunnelCaller } from '../../durable-objects/relay/relay-request.ts';

/** A tunnel's record as access needs it. */
export interface TunnelAccessRecord {
  id: string;
  slug: string;
  auth_mode: TunnelAuthMode;
  enabled: boolean;
  /** Version of the password's hash (tunnel-password.ts hashVersion); null without one. */
  password_version: string | null;
}

export interface TunnelRequest {
  /** The slug the client used, to name the tunnel in refusals. */
  slug: string;
  method: string;
  /** Path and query as the app sees them (for the login page's way back). */
  path: string;
  /** `/t/{slug}` on the API host, `` on the tunnel's own host. */
  base: string;
  wantsHtml: boolean;
  who: TunnelCaller;
}

export interface TunnelChecks {
  keyLive(keyId: string): Promise<boolean>;
  /** Checks a given password (and counts a wrong one against the client; may throw 429). */
  passwordOk(password: string): Promise<boolean>;
}

export type TunnelAccess = { kind: 'allow'; credential_id: string | null } | { kind: 'respond'; response: Response };

export const tunnelNotFound = (slug: string): ApiError => new ApiError('NOT_FOUND', `no tunnel is named ${slug}`);

export async function decideTunnelAccess(t: TunnelAccessRecord | null, r: TunnelRequest, checks: TunnelChecks): Promise<TunnelAccess> {
  const who = r.who;
  if (!t || who.foreign) throw tunnelNotFound(r.slug);
  if (!t.enabled) throw new ApiError('NOT_FOUND', `tunnel ${t.slug} is disabled (PATCH it with enabled: true to serve it again)`);
  if (t.auth_mode === 'public') return { kind: 'allow', credential_id: who.tenant?.credential_id ?? null };
  if (who.tenant) return { kind: 'allow', credential_id: who.tenant.credential_id };

  if (t.auth_mode === 'tenant_only') {
    const c = who.cookie;
    if (c?.kind === 'tenant' && (c.credential_id === null || (await checks.keyLive(c.credential_id)))) return { kind: 'allow', credential_id: c.credential_id };
    throw new ApiError(
      'UNAUTHORIZED',
      `tunnel ${t.slug} is for its organization only: send an API key of it as Authorization: Bearer, or open a link from POST /api/v1/opencomputers/hosts/{id}/tunnels/${t.id}/link`,
    );
  }

  // Password.
  const c = who.cookie;
  if (c?.kind === 'password' && t.password_version !== null && c.version === t.password_version) return { kind: 'allow', credential_id: null };
  if (who.password !== undefined) {
    if (await checks.passwordOk(who.password)) return { kind: 'allow', credential_id: null };
    throw new ApiError('UNAUTHORIZED', `wrong password for tunnel ${t.slug}`, { 'www-authenticate': `Basic realm="tunnel ${t.slug}", charset="UTF-8"` });
  }
  if (r.wantsHtml && (r.method === 'GET' || r.method === 'HEAD')) return { kind: 'respond', response: loginPage(t.slug, r.base, r.path, null) };
  throw new ApiError('UNAUTHORIZED', `tunnel ${t.slug} needs its password: send it in the ${TUNNEL_PASSWORD_HEADER} header or as HTTP Basic`, {
    'www-authenticate': `Basic realm="tunnel ${t.slug}", charset="UTF-8"`,
  });
}
