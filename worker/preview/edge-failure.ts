/**
 * The answer of a preview host or a tunnel that failed: the error's page or
 * envelope, an unexpected error logged and shown as INTERNAL with its
 * request id. Failed credentials and unknown names are unauthenticated
 * traffic, so they count against the client's address (429 past the limit).
 */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { clientAddress, enforceRateLimit, RATE_LIMITS } from '../middleware/rate-limit.ts';
import { previewError } from './preview-pages.ts';

export async function edgeFailure(err: unknown, request: Request, env: Env, requestId: string, what: string): Promise<Response> {
  let e: ApiError;
  if (err instanceof ApiError) e = err;
  else {
    console.error(`[${requestId}] ${what}`, err);
    e = new ApiError('INTERNAL', 'Internal error; include the request_id when reporting it.');
  }
  if (e.code === 'UNAUTHORIZED' || e.code === 'NOT_FOUND') {
    try {
      await enforceRateLimit(env, `ip:${clientAddress(request)}`, RATE_LIMITS.public);
    } catch (limited) {
      if (limited instanceof ApiError) e = limited;
    }
  }
  return previewError(e, request, requestId);
}
