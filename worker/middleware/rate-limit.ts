/**
 * Rate limits of the conventions page: 300 req/min per workspace (general
 * API; an organization's rate_limit_per_minute overrides it), 20 req/min per
 * client address on auth endpoints, 60 req/min per client address for
 * unauthenticated traffic. Each scope is one RateLimiterObject (sliding 60 s
 * window, see durable-objects/rate-limiter-object.ts).
 *
 * A busy isolate takes admissions in batches: when it has seen several
 * requests of a scope in the last second it asks the object for that many at
 * once (at most a twentieth of the limit) and spends them locally for up to
 * LEASE_MS. The object logs every admission it grants, so no more than the
 * limit is ever admitted in a window, give or take one batch granted just
 * before it; a quiet scope still costs one call per request, exactly.
 */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import type { RateDecision } from '../../durable-objects/rate-limiter-object.ts';

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

const LEASE_MS = 10_000;
const LEASES_MAX = 10_000;

interface Lease {
  limit: number;
  /** Admissions granted and not yet spent. */
  banked: number;
  expires: number;
  /** Requests of this scope seen in the current second, to size the next batch. */
  second: number;
  seen: number;
  /** The one call to the object in flight for this scope; concurrent requests wait for it. */
  pending: Promise<RateDecision & { granted: number }> | null;
}

const leases = new Map<string, Lease>();

function leaseOf(scope: string, perMinute: number, now: number): Lease {
  let l = leases.get(scope);
  if (!l || l.limit !== perMinute) {
    if (!l && leases.size >= LEASES_MAX) leases.delete(leases.keys().next().value!);
    l = { limit: perMinute, banked: 0, expires: 0, second: 0, seen: 0, pending: null };
    leases.set(scope, l);
  }
  const second = Math.floor(now / 1000);
  if (second !== l.second) {
    l.second = second;
    l.seen = 0;
  }
  l.seen++;
  return l;
}

/** Counts a request against `scope`; throws 429 RATE_LIMITED with Retry-After when over perMinute. */
export async function enforceRateLimit(env: Env, scope: string, perMinute: number): Promise<void> {
  const lease = leaseOf(scope, perMinute, Date.now());
  for (;;) {
    if (lease.banked > 0 && Date.now() < lease.expires) {
      lease.banked--;
      return;
    }
    if (lease.pending) {
      await lease.pending.catch(() => undefined);
      continue;
    }
    const want = Math.max(1, Math.min(lease.seen, Math.floor(perMinute / 20)));
    const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(scope));
    lease.pending = stub.take(perMinute, want);
    let decision;
    try {
      decision = await lease.pending;
    } catch (err) {
      // A limiter that cannot be reached must not take the API down with it: fail open and say so in the logs.
      console.error(`rate limiter for ${scope} unavailable; request admitted`, err);
      return;
    } finally {
      lease.pending = null;
    }
    if (decision.allowed) {
      // Granted admissions are banked (this request takes one on the next turn of the loop).
      if (Date.now() >= lease.expires) lease.banked = 0;
      lease.banked += decision.granted;
      lease.expires = Date.now() + LEASE_MS;
      continue;
    }
    throw new ApiError('RATE_LIMITED', `rate limit of ${decision.limit} requests per minute exceeded; retry in ${decision.retry_after_s} s`, {
      'retry-after': String(decision.retry_after_s),
      'x-ratelimit-limit': String(decision.limit),
      'x-ratelimit-remaining': '0',
    });
  }
}
