/**
 * Authentication. Tenants send `Authorization: Bearer` with an API key
 * (`msk_live_…` / `msk_test_…`, looked up by sha256) or a short-lived HS256
 * JWT (told apart by shape: three dot-separated segments). The operator sends
 * the OPERATOR_TOKEN secret. Missing or bad credentials are 401; scope checks
 * (403) happen later, where the workspace/project a request touches is known.
 */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import type { Principal } from './principal.ts';
import { API_KEY_RE, looksLikeJwt, secretsEqual } from '../tenancy/keys.ts';
import { verifyTenantJwt } from '../tenancy/jwt.ts';
import { principalFromApiKey, principalFromClaims } from '../tenancy/principals.ts';

/** The credential of `Authorization: Bearer <token>`, or null. */
export function bearer(request: Request): string | null {
  const h = request.headers.get('authorization');
  const m = h && /^Bearer\s+(\S+)\s*$/i.exec(h.trim());
  return m ? m[1] : null;
}

/** Authenticates a tenant credential string (key or JWT). */
export async function authenticateCredential(env: Env, token: string): Promise<Principal> {
  if (API_KEY_RE.test(token)) return principalFromApiKey(env, token);
  if (looksLikeJwt(token)) return principalFromClaims(env, await verifyTenantJwt(env, token));
  throw new ApiError('UNAUTHORIZED', 'credential is neither an API key (msk_live_…, msk_test_…) nor a JWT');
}

/** Authenticates the tenant calling a request; 401 when the credential is missing or invalid. */
export async function authenticateTenant(request: Request, env: Env): Promise<Principal> {
  const token = bearer(request);
  if (!token) throw new ApiError('UNAUTHORIZED', 'missing Authorization: Bearer credentials');
  return authenticateCredential(env, token);
}

/** Checks the operator token in constant time; 401 otherwise (and always when no token is configured). */
export async function authenticateOperator(request: Request, env: Env): Promise<void> {
  const token = bearer(request);
  if (!token || !(await secretsEqual(token, env.OPERATOR_TOKEN ?? ''))) {
    throw new ApiError('UNAUTHORIZED', 'invalid or missing operator token');
  }
}
