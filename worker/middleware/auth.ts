/** Authentication of tenants (API keys, JWTs) and of the operator. PLACEHOLDER: being replaced. */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import type { Principal } from './principal.ts';
import { sha256Hex } from '../http/ids.ts';

export function bearer(request: Request): string | null {
  const h = request.headers.get('authorization');
  const m = h && /^Bearer\s+(.+)$/i.exec(h.trim());
  return m ? m[1].trim() : null;
}

export async function authenticateTenant(request: Request, env: Env): Promise<Principal> {
  const token = bearer(request);
  if (!token) throw new ApiError('UNAUTHORIZED', 'missing Authorization: Bearer credentials');
  const row = await env.DB.prepare('SELECT k.id, k.org_id, k.mode FROM api_keys k WHERE k.key_hash = ? AND k.revoked_at IS NULL')
    .bind(await sha256Hex(token))
    .first<{ id: string; org_id: string; mode: 'live' | 'test' }>();
  if (!row) throw new ApiError('UNAUTHORIZED', 'invalid API key');
  return { kind: 'api_key', org_id: row.org_id, subject: row.id, workspace_ids: null, project_ids: null, mode: row.mode, rate_scope: row.org_id, rate_limit: null };
}

export async function authenticateOperator(request: Request, env: Env): Promise<void> {
  if (bearer(request) !== env.OPERATOR_TOKEN) throw new ApiError('UNAUTHORIZED', 'invalid operator token');
}
