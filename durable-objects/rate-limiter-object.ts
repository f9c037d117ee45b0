/**
 * One rate-limit bucket (one instance per scope, addressed by
 * idFromName(scope): `ws:<workspace>`, `auth:<ip>`, `ip:<ip>`).
 *
 * Algorithm: a sliding 60 s log. The object keeps the timestamps of the
 * requests it admitted in the last 60 s; a request is admitted when fewer
 * than `perMinute` of them remain. Unlike a fixed window this never lets 2x
 * the limit through around a window boundary, and Retry-After is exact: the
 * time until the oldest counted request leaves the window. Refused requests
 * are not logged, so a client that keeps retrying is not locked out longer.
 *
 * The log lives in memory only: one RPC per request and no storage write. If
 * the object is evicted or restarts, its counters start again from zero —
 * an accepted trade-off for a limiter (at worst one extra minute's allowance).
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env.ts';

export const WINDOW_MS = 60_000;

export interface RateDecision {
  allowed: boolean;
  limit: number;
  /** Requests still allowed in the current window after this one. */
  remaining: number;
  /** Seconds until one more request would be admitted (0 when allowed). */
  retry_after_s: number;
}

export class RateLimiterObject extends DurableObject<Env> {
  /** Admission times (ms), oldest first; never longer than the largest limit it was asked about. */
  private log: number[] = [];

  /** Counts one request against a limit of perMinute per sliding minute. */
  async hit(perMinute: number): Promise<RateDecision> {
    return this.take(perMinute, 1);
  }

  /**
   * Admits up to `want` requests at once (at least one, or none): the caller
   * spends the extra ones itself, so a busy isolate pays one call per batch
   * rather than per request. Every granted request is logged now, so the
   * limit holds however the grants are spent.
   */
  async take(perMinute: number, want: number): Promise<RateDecision & { granted: number }> {
    const limit = Math.max(1, Math.floor(perMinute));
    const now = Date.now();
    const cutoff = now - WINDOW_MS;
    let expired = 0;
    while (expired < this.log.length && this.log[expired] <= cutoff) expired++;
    if (expired) this.log.splice(0, expired);

    if (this.log.length >= limit) {
      // When the limit was lowered the log may hold more than `limit` entries;
      // this many of the oldest must expire before one more request fits.
      const blocking = this.log[this.log.length - limit];
      const retryMs = blocking + WINDOW_MS - now;
      return { allowed: false, granted: 0, limit, remaining: 0, retry_after_s: Math.max(1, Math.ceil(retryMs / 1000)) };
    }
    const granted = Math.max(1, Math.min(Math.floor(want), limit - this.log.length));
    for (let i = 0; i < granted; i++) this.log.push(now);
    return { allowed: true, granted, limit, remaining: limit - this.log.length, retry_after_s: 0 };
  }
}
