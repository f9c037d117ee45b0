/**
 * Credentials of tunnels, none of which reaches the app:
 *  - tenant_only: a link the API mints (`POST …/tunnels/{id}/link`) carries a
 *    one-time ticket, 60 s, to `{base}/__hangar/auth`, which sets TUNNEL_COOKIE
 *    (1 h) bound to the tunnel and the API key that minted it;
 *  - password: the login form (`{base}/__hangar/login`) sets TUNNEL_COOKIE
 *    bound to the tunnel and the password's hash (a new password ends it);
 *    API clients send the password in TUNNEL_PASSWORD_HEADER, or HTTP Basic.
 * `{base}` is `/t/{slug}` on the API host (the cookie's Path) or `` on the
 * tunnel's own host (the cookie is that host's only). Cookies and tickets are
 * HS256 JWTs under JWT_SECRET.
 */
import { SignJWT, jwtVerify } from 'jose';
import type { Env } from '../env.ts';

export const TUNNEL_COOKIE = '__hangar_tunnel';
export const TUNNEL_PASSWORD_HEADER = 'x-hangar-tunnel-password';
/** Paths under `{base}` + this are Hangar's, never the app's. */
export const TUNNEL_RESERVED = '/__hangar/';
export const TUNNEL_AUTH_PATH = '/__hangar/auth';
export const TUNNEL_LOGIN_PATH = '/__hangar/login';

export const TUNNEL_LINK_TTL_S = 60;
export const TUNNEL_COOKIE_TTL_S = 3600;

const LINK_AUDIENCE = 'hangar-tunnel-link';
const COOKIE_AUDIENCE = 'hangar-tunnel';

/** What a tunnel cookie or ticket grants. */
export type TunnelGrant =
  /** The tunnel's tenant, by the API key that minted the link (null for a JWT). */
  | { kind: 'tenant'; tunnel_id: string; credential_id: string | null; jti?: string; exp: number }
  /** Whoever gave the password whose hash has this version. */
  | { kind: 'password'; tunnel_id: string; version: string; exp: number };

const secret = (env: Env) => new TextEncoder().encode(env.JWT_SECRET);

type Claims = { kind: 'tenant'; kid: string | null } | { kind: 'password'; v: string };

async function sign(env: Env, audience: string, tunnelId: string, claims: Claims, ttlS: number, jti?: string): Promise<{ token: string; exp: number }> {
  const exp = Math.floor(Date.now() / 1000) + ttlS;
  const jwt = new SignJWT({ ...claims }).setProtectedHeader({ alg: 'HS256' }).setIssuer(env.JWT_ISSUER).setAudience(audience).setSubject(tunnelId).setExpirationTime(exp);
  if (jti) jwt.setJti(jti);
  return { token: await jwt.sign(secret(env)), exp };
}

async function verify(env: Env, audience: string, token: string, tunnelId: string): Promise<TunnelGrant | null> {
  try {
    const { payload: p } = await jwtVerify(token, secret(env), { algorithms: ['HS256'], issuer: env.JWT_ISSUER, audience, subject: tunnelId, clockTolerance: 5 });
    if (typeof p.exp !== 'number') return null;
    if (p.kind === 'tenant') return { kind: 'tenant', tunnel_id: tunnelId, credential_id: typeof p.kid === 'string' ? p.kid : null, jti: p.jti, exp: p.exp };
    if (p.kind === 'password' && typeof p.v === 'string') return { kind: 'password', tunnel_id: tunnelId, version: p.v, exp: p.exp };
    return null;
  } catch {
    return null;
  }
}

export const mintTunnelTicket = (env: Env, tunnelId: string, credentialId: string | null) =>
  sign(env, LINK_AUDIENCE, tunnelId, { kind: 'tenant', kid: credentialId }, TUNNEL_LINK_TTL_S, crypto.randomUUID());
export const verifyTunnelTicket = (env: Env, token: string, tunnelId: string) => verify(env, LINK_AUDIENCE, token, tunnelId);
export const mintTunnelCookie = (env: Env, tunnelId: string, claims: Claims) => sign(env, COOKIE_AUDIENCE, tunnelId, claims, TUNNEL_COOKIE_TTL_S);
export const verifyTunnelCookie = (env: Env, token: string, tunnelId: string) => verify(env, COOKIE_AUDIENCE, token, tunnelId);

/** The tunnel cookie: for `base` (the tunnel's path on the API host, or `` on its own host), HttpOnly, Secure over https. */
export function tunnelCookie(value: string, base: string, maxAgeS: number, secure: boolean): string {
  return `${TUNNEL_COOKIE}=${value}; Path=${base || '/'}; Max-Age=${maxAgeS}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/** The password an API client gave: the tunnel password header, or the password of HTTP Basic (any user name). */
export function passwordOf(headers: Headers): string | undefined {
  const direct = headers.get(TUNNEL_PASSWORD_HEADER);
  if (direct !== null) return direct.slice(0, 1024);
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(headers.get('authorization') ?? '');
  if (!m) return undefined;
  try {
    const decoded = new TextDecoder().decode(Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0)));
    const colon = decoded.indexOf(':');
    return colon < 0 ? undefined : decoded.slice(colon + 1).slice(0, 1024);
  } catch {
    return undefined;
  }
}
