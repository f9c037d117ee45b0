/**
 * Export links (POST …/files/export): a signed, expiring URL anyone may fetch
 * without a key. The token is an HS256 JWT bound to one computer, one path
 * and what it is (a file, or a directory served as tar.gz), carrying the API
 * key that made it, so revoking the key can end its links.
 */
import { SignJWT, errors, jwtVerify } from 'jose';
import type { Env } from '../env.ts';

const AUDIENCE = 'hangar-export';
const key = (env: Env) => new TextEncoder().encode(env.JWT_SECRET);

export interface ExportClaims {
  org_id: string;
  computer_id: string;
  path: string;
  kind: 'file' | 'dir';
  credential_id: string | null;
}

export async function mintExportToken(env: Env, c: ExportClaims, ttlSeconds: number): Promise<{ token: string; expires_at: number }> {
  const expires_at = Math.floor(Date.now() / 1000) + ttlSeconds;
  const token = await new SignJWT({ org_id: c.org_id, path: c.path, kind: c.kind, ...(c.credential_id && { kid: c.credential_id }) })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(env.JWT_ISSUER)
    .setAudience(AUDIENCE)
    .setSubject(c.computer_id)
    .setIssuedAt()
    .setExpirationTime(expires_at)
    .sign(key(env));
  return { token, expires_at };
}

/** The link's claims; 'expired' for one past its time, 'revoked' when the key that made it is; null for anything else. */
export async function verifyExportToken(env: Env, token: string): Promise<ExportClaims | 'expired' | 'revoked' | null> {
  let claims: ExportClaims;
  try {
    const { payload: p } = await jwtVerify(token, key(env), { algorithms: ['HS256'], issuer: env.JWT_ISSUER, audience: AUDIENCE });
    if (typeof p.org_id !== 'string' || typeof p.sub !== 'string' || typeof p.path !== 'string' || (p.kind !== 'file' && p.kind !== 'dir')) return null;
    claims = { org_id: p.org_id, computer_id: p.sub, path: p.path, kind: p.kind, credential_id: typeof p.kid === 'string' ? p.kid : null };
  } catch (err) {
    return err instanceof errors.JWTExpired ? 'expired' : null;
  }
  if (claims.credential_id !== null) {
    const live = await env.DB.prepare('SELECT 1 AS ok FROM api_keys WHERE id = ? AND org_id = ? AND revoked_at IS NULL').bind(claims.credential_id, claims.org_id).first();
    if (!live) return 'revoked';
  }
  return claims;
}
