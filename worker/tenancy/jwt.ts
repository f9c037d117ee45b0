/**
 * Short-lived tenant JWTs: HS256 with the JWT_SECRET secret, issuer and
 * audience from the Worker's vars. The algorithm list is pinned so a token
 * signed with `none` or another HMAC size is refused rather than negotiated.
 */
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { isoNow } from '../http/ids.ts';

const ALG = 'HS256';
/** Leeway for clocks of whoever minted the token (our own Workers, or the self-hoster's backend). */
export const CLOCK_TOLERANCE_S = 30;
export const DEFAULT_TOKEN_TTL_S = 15 * 60;
export const MAX_TOKEN_TTL_S = 60 * 60;

/** Claims Hangar reads; everything else in a token is ignored. */
export const TenantClaims = z.object({
  sub: z.string().min(1),
  org_id: z.string().min(1),
  // null or absent means the whole organization, as on API keys.
  workspace_ids: z.array(z.string().min(1)).min(1).nullish(),
  project_ids: z.array(z.string().min(1)).min(1).nullish(),
  mode: z.enum(['live', 'test']).optional(),
  // Set on tokens minted from an API key: revoking the key ends its tokens too.
  key_id: z.string().min(1).optional(),
});
export type TenantClaims = z.infer<typeof TenantClaims>;

function secretKey(env: Env): Uint8Array | null {
  // An HS256 secret shorter than its hash output is brute-forceable; such a configuration disables JWTs.
  if (!env.JWT_SECRET || env.JWT_SECRET.length < 32) return null;
  return new TextEncoder().encode(env.JWT_SECRET);
}

/** Verifies a tenant JWT; every failure is a 401 whose message says why without echoing the token. */
export async function verifyTenantJwt(env: Env, token: string): Promise<TenantClaims> {
  const key = secretKey(env);
  if (!key) throw new ApiError('UNAUTHORIZED', 'JWT authentication is not configured on this server');
  let payload: unknown;
  try {
    ({ payload } = await jwtVerify(token, key, {
      algorithms: [ALG],
      issuer: env.JWT_ISSUER,
      audience: env.JWT_AUDIENCE,
      requiredClaims: ['exp', 'sub'],
      clockTolerance: CLOCK_TOLERANCE_S,
    }));
  } catch (err) {
    throw new ApiError('UNAUTHORIZED', `invalid token: ${reason(err)}`);
  }
  const claims = TenantClaims.safeParse(payload);
  if (!claims.success) {
    const issue = claims.error.issues[0];
    throw new ApiError('UNAUTHORIZED', `invalid token: claim ${issue.path.join('.') || '(root)'} ${issue.message}`);
  }
  return claims.data;
}

function reason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim ${err.claim} ${err.reason}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return `algorithm not allowed (only ${ALG})`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad signature';
  return 'malformed';
}

/** Signs a tenant JWT valid for ttlSeconds from now. */
export async function signTenantJwt(env: Env, claims: TenantClaims, ttlSeconds: number): Promise<{ token: string; expires_at: string }> {
  const key = secretKey(env);
  if (!key) throw new Error('JWT_SECRET is missing or shorter than 32 characters');
  const now = Math.floor(Date.now() / 1000);
  const exp = now + ttlSeconds;
  const { sub, ...rest } = claims;
  const token = await new SignJWT(rest)
    .setProtectedHeader({ alg: ALG, typ: 'JWT' })
    .setSubject(sub)
    .setIssuer(env.JWT_ISSUER)
    .setAudience(env.JWT_AUDIENCE)
    .setIssuedAt(now)
    .setExpirationTime(exp)
    .sign(key);
  return { token, expires_at: isoNow(exp * 1000) };
}
