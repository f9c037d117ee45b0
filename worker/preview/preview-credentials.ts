/**
 * Credentials of preview hosts, none of which ever reaches the app:
 *  - private ports: a link the API mints (`POST …/ports/{port}/link`) carries
 *    a one-time ticket, 60 s, to `/__hangar/auth` on the port's host, which
 *    sets PREVIEW_COOKIE (1 h, HttpOnly, that host only) and redirects on;
 *  - protected ports: the port's access token, given as `?token=` (then kept
 *    in TOKEN_COOKIE) or in the TOKEN_HEADER header.
 * Tickets and cookies are HS256 JWTs under JWT_SECRET, bound to one computer
 * and port and to the API key that minted them (`kid`).
 */
import { SignJWT, jwtVerify } from 'jose';
import type { Env } from '../env.ts';

export const PREVIEW_COOKIE = '__hangar_preview';
export const TOKEN_COOKIE = '__hangar_token';
export const TOKEN_HEADER = 'x-hangar-port-token';
/** Paths under this prefix on a preview host are Hangar's, never the app's. */
export const RESERVED_PREFIX = '/__hangar/';
export const AUTH_PATH = '/__hangar/auth';

export const LINK_TTL_S = 60;
export const COOKIE_TTL_S = 3600;

const LINK_AUDIENCE = 'hangar-preview-link';
const COOKIE_AUDIENCE = 'hangar-preview';

export interface PreviewGrant {
  computer_id: string;
  port: number;
  org_id: string;
  /** The API key behind the grant; null when a JWT minted it. */
  credential_id: string | null;
  /** Link tickets: the one-time id. */
  jti?: string;
  /** Seconds since the epoch. */
  exp: number;
}

const key = (env: Env) => new TextEncoder().encode(env.JWT_SECRET);

async function sign(env: Env, audience: string, g: Omit<PreviewGrant, 'exp'>, ttlS: number): Promise<{ token: string; exp: number }> {
  const exp = Math.floor(Date.now() / 1000) + ttlS;
  const jwt = new SignJWT({ port: g.port, org_id: g.org_id, kid: g.credential_id }).setProtectedHeader({ alg: 'HS256' }).setIssuer(env.JWT_ISSUER).setAudience(audience).setSubject(g.computer_id).setExpirationTime(exp);
  if (g.jti) jwt.setJti(g.jti);
  return { token: await jwt.sign(key(env)), exp };
}

async function verify(env: Env, audience: string, token: string, computerId: string, port: number): Promise<PreviewGrant | null> {
  try {
    const { payload } = await jwtVerify(token, key(env), { algorithms: ['HS256'], issuer: env.JWT_ISSUER, audience, subject: computerId, clockTolerance: 5 });
    if (payload.port !== port || typeof payload.org_id !== 'string' || typeof payload.exp !== 'number') return null;
    const kid = typeof payload.kid === 'string' ? payload.kid : null;
    return { computer_id: computerId, port, org_id: payload.org_id, credential_id: kid, jti: payload.jti, exp: payload.exp };
  } catch {
    return null;
  }
}

export const mintLinkTicket = (env: Env, g: Omit<PreviewGrant, 'exp' | 'jti'>) => sign(env, LINK_AUDIENCE, { ...g, jti: crypto.randomUUID() }, LINK_TTL_S);
export const verifyLinkTicket = (env: Env, token: string, computerId: string, port: number) => verify(env, LINK_AUDIENCE, token, computerId, port);
export const mintPreviewCookie = (env: Env, g: Omit<PreviewGrant, 'exp' | 'jti'>) => sign(env, COOKIE_AUDIENCE, g, COOKIE_TTL_S);
export const verifyPreviewCookie = (env: Env, token: string, computerId: string, port: number) => verify(env, COOKIE_AUDIENCE, token, computerId, port);

/** The cookies of a request, by name (the first of a name wins). */
export function readCookies(header: string | null): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (name && !out.has(name)) out.set(name, part.slice(eq + 1).trim());
  }
  return out;
}

/** The Cookie header without Hangar's cookies; null when nothing is left. */
export function withoutOurCookies(header: string | null): string | null {
  if (!header) return null;
  const kept = header
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p && !p.startsWith('__hangar_'));
  return kept.length ? kept.join('; ') : null;
}

/** A Set-Cookie for a preview host: that host only, HttpOnly, Secure over https, sent on top-level navigations. */
export function setCookie(name: string, value: string, maxAgeS: number, secure: boolean): string {
  return `${name}=${value}; Path=/; Max-Age=${maxAgeS}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}
