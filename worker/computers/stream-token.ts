/**
 * Short-lived tokens for desktop and terminal WebSockets, which browsers open
 * without headers: HS256 JWTs bound to one computer and organization, and to
 * the API key they were minted with, so revoking that key ends them.
 */
import { SignJWT, jwtVerify } from 'jose';
import type { Env } from '../env.ts';
import { apiKeyLive } from '../tenancy/principals.ts';
import type { Principal } from '../middleware/principal.ts';

export const STREAM_TOKEN_TTL_S = 300;
const AUDIENCE = 'hangar-stream';

const key = (env: Env) => new TextEncoder().encode(env.JWT_SECRET);

/** Who a stream token speaks for: an organization, through an API key (null when the minting credential had none). */
export interface StreamGrant {
  org_id: string;
  credential_id: string | null;
}

/** Tokens speak for the caller's organization through the caller's key, which can revoke them. */
export const grantOf = (p: Principal): StreamGrant => ({ org_id: p.org_id, credential_id: p.credential_id });

/**
 * A token for one computer, of one kind (its audience), that speaks for `grant`
 * until `ttl_s` from now: the stream tokens here, the desktop's viewer
 * sessions (worker/desktop/viewer-session.ts).
 */
export async function mintComputerToken(env: Env, audience: string, ttl_s: number, grant: StreamGrant, computerId: string): Promise<{ token: string; expires_at: number }> {
  const expires_at = Math.floor(Date.now() / 1000) + ttl_s;
  const token = await new SignJWT({ org_id: grant.org_id, key_id: grant.credential_id })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(env.JWT_ISSUER)
    .setAudience(audience)
    .setSubject(computerId)
    .setIssuedAt()
    .setExpirationTime(expires_at)
    .sign(key(env));
  return { token, expires_at };
}

/** Whom a token of this kind was minted for, if it is valid for this computer and its key is not revoked; null otherwise. */
export async function verifyComputerToken(env: Env, audience: string, token: string, computerId: string): Promise<StreamGrant | null> {
  let payload;
  try {
    ({ payload } = await jwtVerify(token, key(env), { algorithms: ['HS256'], issuer: env.JWT_ISSUER, audience, subject: computerId, clockTolerance: 5 }));
  } catch {
    return null;
  }
  if (typeof payload.org_id !== 'string') return null;
  const credentialId = typeof payload.key_id === 'string' ? payload.key_id : null;
  if (credentialId && !(await apiKeyLive(env, credentialId))) return null;
  return { org_id: payload.org_id, credential_id: credentialId };
}

export const mintStreamToken = (env: Env, grant: StreamGrant, computerId: string) => mintComputerToken(env, AUDIENCE, STREAM_TOKEN_TTL_S, grant, computerId);

/** Whom the token was minted for, if it is valid for this computer and its key is not revoked; null otherwise. */
export const verifyStreamToken = (env: Env, token: string, computerId: string) => verifyComputerToken(env, AUDIENCE, token, computerId);
