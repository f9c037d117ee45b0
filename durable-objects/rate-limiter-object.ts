/** Rate limit counters per scope. PLACEHOLDER: being replaced. */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env.ts';

export class RateLimiterObject extends DurableObject<Env> {
  async hit(_perMinute: number): Promise<{ allowed: boolean; retry_after_s: number }> {
    return { allowed: true, retry_after_s: 0 };
  }
}
