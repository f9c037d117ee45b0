/** Idempotency-Key handling. PLACEHOLDER: being replaced. */
import type { Env } from '../env.ts';

export async function withIdempotency(_env: Env, _orgId: string, _key: string, _fingerprintSource: string, run: () => Promise<Response>): Promise<Response> {
  return run();
}
