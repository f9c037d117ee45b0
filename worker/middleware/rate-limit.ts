/** Rate limits kept in a Durable Object per scope. PLACEHOLDER: being replaced. */
import type { Env } from '../env.ts';

export const RATE_LIMITS = { general: 300, auth: 20, public: 60 } as const;

export function clientAddress(request: Request): string {
  return request.headers.get('cf-connecting-ip') ?? '127.0.0.1';
}

export async function enforceRateLimit(_env: Env, _scope: string, _perMinute: number): Promise<void> {}
