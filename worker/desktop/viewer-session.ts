/**
 * Viewer sessions of the desktop page. A link carries a stream token (five
 * minutes: long enough to open it); the page exchanges it once for a viewer
 * token that lets it reconnect for VIEWER_SESSION_TTL_S, so a dropped
 * connection comes back without a new link. Bound to one computer and
 * organization like the stream token it came from, and to the same API key
 * (`kid`), so revoking the key ends it.
 */
import { SignJWT, jwtVerify } from 'jose';
import type { Env } from '../env.ts';
import { apiKeyLive } from '../tenancy/principals.ts';

export const VIEWER_SESSION_TTL_S = 12 * 3600;
const AUDIENCE = 'hangar-desktop-viewer';

const key = (env: Env) => new TextEncoder().encode(env.JWT_SECRET);

export interface ViewerClaims {
  org_id: string;
  credential_id: string | null;
}

export async function mintViewerToken(env: Env, claims: ViewerClaims, computerId: string): Promise<{ token: string; expires_at: number }> {
  const expires_at = Math.floor(Date.now() / 1000) + VIEWER_SESSION_TTL_S;
  const token = await new SignJWT({ org_id: claims.org_id, ...(claims.credential_id ? { kid: claims.credential_id } : {}) })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(env.JWT_ISSUER)
    .setAudience(AUDIENCE)
    .setSubject(computerId)
    .setIssuedAt()
    .setExpirationTime(expires_at)
    .sign(key(env));
  return { token, expires_at };
}

/** The claims of a viewer token valid for this computer whose key is not revoked; null otherwise. */
export async function verifyViewerToken(env: Env, token: string, computerId: string): Promise<ViewerClaims | null> {
  let payload;
  try {
    ({ payload } = await jwtVerify(token, key(env), { algorithms: ['HS256'], issuer: env.JWT_ISSUER, audience: AUDIENCE, subject: computerId, clockTolerance: 5 }));
  } catch {
    return null;
  }
  if (typeof payload.org_id !== 'string') return null;
  const credentialId = typeof payload.kid === 'string' ? payload.kid : null;
  if (credentialId && !(await apiKeyLive(env, credentialId))) return null;
  return { org_id: payload.org_id, credential_id: credentialId };
}
