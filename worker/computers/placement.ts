/** Choosing the fleet host a new computer lives on: online, in the region, offering its isolation, fewest computers first. */
import { ApiError } from '../../schema/errors.ts';
import { DEFAULT_ISOLATION, ISOLATIONS, isIsolation, type Isolation } from '../../schema/isolation.ts';
import type { Env } from '../env.ts';

/** A host offers an isolation when its agent's hello listed that driver (hosts.drivers, a JSON array). */
const OFFERS = `EXISTS (SELECT 1 FROM json_each(h.drivers) d WHERE d.value = ?)`;

export async function pickHost(env: Env, region: string, isolation: Isolation): Promise<{ id: string; region: string }> {
  const host = await env.DB.prepare(
    `SELECT h.id, h.region, (SELECT COUNT(*) FROM computers c WHERE c.host_id = h.id) AS load
     FROM hosts h WHERE h.kind = 'fleet' AND h.status = 'online' AND h.region = ? AND ${OFFERS} ORDER BY load ASC, h.created_at ASC LIMIT 1`,
  )
    .bind(region, isolation)
    .first<{ id: string; region: string }>();
  if (host) return host;
  // A host that never said hello may offer it once it does: only hosts that listed their drivers rule it out.
  const maybe = await env.DB.prepare(
    `SELECT 1 AS x FROM hosts h WHERE h.kind = 'fleet' AND h.status != 'revoked' AND h.region = ? AND (${OFFERS} OR json_array_length(h.drivers) = 0) LIMIT 1`,
  )
    .bind(region, isolation)
    .first();
  if (!maybe) {
    throw new ApiError('ISOLATION_UNAVAILABLE', `no host in region "${region}" offers isolation "${isolation}"; its hosts' agents would need --driver ${isolation}`);
  }
  throw new ApiError('NO_CAPACITY', `no host offering isolation "${isolation}" is online in region "${region}"; start a host agent there and try again`);
}

/** True when some fleet host serves the region at all (online or not). */
export async function regionExists(env: Env, region: string): Promise<boolean> {
  const row = await env.DB.prepare(`SELECT 1 AS x FROM hosts WHERE kind = 'fleet' AND region = ? AND status != 'revoked' LIMIT 1`).bind(region).first();
  return row !== null;
}

/** The operator's default isolation (the DEFAULT_ISOLATION var), checked. */
export function defaultIsolation(env: Env): Isolation {
  const v = env.DEFAULT_ISOLATION?.trim() || DEFAULT_ISOLATION;
  if (!isIsolation(v)) throw new ApiError('INTERNAL', `the server's DEFAULT_ISOLATION is "${v}"; it must be one of ${ISOLATIONS.join(', ')}`);
  return v;
}
