/** Choosing the fleet host a new computer lives on: online, in the region, fewest computers first. */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';

export async function pickHost(env: Env, region: string): Promise<{ id: string; region: string }> {
  const host = await env.DB.prepare(
    `SELECT h.id, h.region, (SELECT COUNT(*) FROM computers c WHERE c.host_id = h.id) AS load
     FROM hosts h WHERE h.kind = 'fleet' AND h.status = 'online' AND h.region = ? ORDER BY load ASC, h.created_at ASC LIMIT 1`,
  )
    .bind(region)
    .first<{ id: string; region: string }>();
  if (!host) throw new ApiError('NO_CAPACITY', `no host is online in region "${region}"; start a host agent there and try again`);
  return host;
}

/** True when some fleet host serves the region at all (online or not). */
export async function regionExists(env: Env, region: string): Promise<boolean> {
  const row = await env.DB.prepare(`SELECT 1 AS x FROM hosts WHERE kind = 'fleet' AND region = ? AND status != 'revoked' LIMIT 1`).bind(region).first();
  return row !== null;
}
