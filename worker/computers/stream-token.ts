/**
 * Short-lived tokens for desktop and terminal WebSockets, which browsers open
 * without headers: HS256 JWTs bound to one computer and organization.
 */
import { SignJWT, jwtVerify } from 'jose';
import type { Env } from '../env.ts';

export const STREAM_TOKEN_TTL_S = 300;
const AUDIENCE = 'hangar-stream';

const key = (env: Env) => new TextEncoder().encode(env.JWT_SECRET);

export async function mintStreamToken(env: Env, orgId: string, computerId: string): Promise<{ token: string; expires_at: number }> {
  const expires_at = Math.floor(Date.now() / 1000) + STREAM_TOKEN_TTL_S;
  const token = await new SignJWT({ org_id: orgId })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(env.JWT_ISSUER)
    .setAudience(AUDIENCE)
    .setSubject(computerId)
    .setIssuedAt()
    .setExpirationTime(expires_at)
    .sign(key(env));
  return { token, expires_at };
}

/** The organization the token was minted for, if it is valid for this computer; null otherwise. */
export async function verifyStreamToken(env: Env, token: string, computerId: string): Promise<string | null> {
  try {
    const { payload } = await jwtVerify(token, key(env), { algorithms: ['HS256'], issuer: env.JWT_ISSUER, audience: AUDIENCE, subject: computerId, clockTolerance: 5 });
    return typeof payload.org_id === 'string' ? payload.org_id : null;
  } catch {
    return null;
  }
}
