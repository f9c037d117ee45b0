/** Host agents authenticate with their host key (`hk_…`), stored only as a sha256 hash. */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { sha256Hex } from '../http/ids.ts';
import { bearer } from './auth.ts';

export interface HostIdentity {
  id: string;
  org_id: string | null;
  kind: 'fleet' | 'byo';
}

export async function authenticateHost(request: Request, env: Env): Promise<HostIdentity> {
  const key = bearer(request);
  if (!key || !key.startsWith('hk_')) throw new ApiError('UNAUTHORIZED', 'missing host key: send Authorization: Bearer hk_…');
  const host = await env.DB.prepare(`SELECT id, org_id, kind FROM hosts WHERE key_hash = ? AND status != 'revoked'`)
    .bind(await sha256Hex(key))
    .first<HostIdentity>();
  if (!host) throw new ApiError('UNAUTHORIZED', 'unknown or revoked host key');
  return host;
}
