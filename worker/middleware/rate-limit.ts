/**
 * Rate limits of the conventions page: 300 req/min per workspace (general
 * API; an organization's rate_limit_per_minute overrides it), 20 req/min per
 * client address on auth endpoints, 60 req/min per client address for
 * unauthenticated traffic. Each scope is one RateLimiterObject (sliding 60 s
 * window, see durable-objects/rate-limiter-object.ts); a request costs one RPC.
 */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';

export const RATE_LIMITS = { general: 300, auth: 20, public: 60 } as const;

/**
 * The caller's address for per-address limits. Behind Cloudflare,
 * CF-Connecting-IP is set by the edge and cannot be forged; X-Forwarded-For is
 * only a fallback for local development behind another proxy.
 */
export function clientAddress(request: Request): string {
  const cf = request.headers.get('cf-connecting-ip')?.trim();
  if (cf) return cf;
  const xff = request.headers.get('x-forwarded-for')?.split(',')[0]?.trim();
  return xff || 'local';
}

/** Counts a request against `scope`; throws 429 RATE_LIMITED with Retry-After when over perMinute. */
export async function enforceRateLimit(env: Env, scope: string, perMinute: number): Promise<void> {
  const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(scope));
  let decision;
  try {
    decision = await stub.hit(perMinute);
  } catch (err) {
    // A limiter that cannot be reached must not take the API down with it: fail open and say so in the logs.
    console.error(`rate limiter for ${scope} unavailable; request admitted`, err);
    return;
  }
  if (decision.allowed) return;
  throw new ApiError('RATE_LIMITED', `rate limit of ${decision.limit} requests per minute exceeded; retry in ${decision.retry_after_s} s`, {
    'retry-after': String(decision.retry_after_s),
    'x-ratelimit-limit': String(decision.limit),
    'x-ratelimit-remaining': '0',
  });
}
