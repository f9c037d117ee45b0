/**
 * Where computers run, and whether there is room. A fleet host takes
 * computers up to its CPUs and memory (as its agent reported them in its
 * hello) times the operator's overcommit ratios (Worker vars CPU_OVERCOMMIT,
 * default 4, and MEMORY_OVERCOMMIT, default 1: no memory overcommit). A
 * computer holds its size's vCPUs and memory on its host while it is
 * provisioning, starting, running, restarting or stopping; a stopped one
 * holds only its disk. Room is taken in the same D1 statement that makes the
 * computer reserve it (the insert of a new one, the status change of a
 * start), so two requests racing for the last room never both get it.
 * A computer goes only to a host whose agent offers its isolation.
 */
import { ApiError } from '../../schema/errors.ts';
import { DEFAULT_ISOLATION, ISOLATIONS, isIsolation, type Isolation } from '../../schema/isolation.ts';
import { SIZES, type Size } from '../../schema/sizes.ts';
import type { Env } from '../env.ts';
import { isoNow } from '../http/ids.ts';

/** Statuses in which a computer holds its vCPUs and memory on its host. */
export const RESERVING = ['provisioning', 'starting', 'running', 'restarting', 'stopping'] as const;
const RESERVING_SQL = RESERVING.map((s) => `'${s}'`).join(', ');

export const DEFAULT_CPU_OVERCOMMIT = 4;
export const DEFAULT_MEMORY_OVERCOMMIT = 1;

export interface Overcommit {
  cpu: number;
  memory: number;
}

/** The operator's ratios; a value that is not a positive number is ignored (and said so in the log). */
export function overcommitOf(env: Env): Overcommit {
  return {
    cpu: ratio(env.CPU_OVERCOMMIT, DEFAULT_CPU_OVERCOMMIT, 'CPU_OVERCOMMIT'),
    memory: ratio(env.MEMORY_OVERCOMMIT, DEFAULT_MEMORY_OVERCOMMIT, 'MEMORY_OVERCOMMIT'),
  };
}

function ratio(raw: string | undefined, fallback: number, name: string): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (Number.isFinite(n) && n > 0) return n;
  console.error(`${name}=${JSON.stringify(raw)} is not a positive number; using ${fallback}`);
  return fallback;
}

/**
 * SQL true when host ?at has room for ?at+2 vCPUs and ?at+4 MiB on top of what
 * its computers hold, leaving out computer ?at+5 (the one asking); ?at+1 and
 * ?at+3 are the ratios. Bind with `roomArgs`.
 */
export function roomSql(at: number): string {
  const p = (i: number) => `?${at + i}`;
  const held = (column: string) =>
    `(SELECT COALESCE(SUM(c.${column}), 0) FROM computers c WHERE c.host_id = h.id AND c.status IN (${RESERVING_SQL}) AND c.id != ${p(5)})`;
  return `EXISTS (SELECT 1 FROM hosts h WHERE h.id = ${p(0)} AND h.kind = 'fleet' AND h.status = 'online' AND h.cpus IS NOT NULL AND h.memory_mb IS NOT NULL
    AND h.cpus * ${p(1)} >= ${p(2)} + ${held('vcpus')} AND h.memory_mb * ${p(3)} >= ${p(4)} + ${held('memory_mb')})`;
}

export const roomArgs = (hostId: string, size: Size, o: Overcommit, computerId = ''): unknown[] => [
  hostId,
  o.cpu,
  SIZES[size].vcpus,
  o.memory,
  SIZES[size].memory_mb,
  computerId,
];

const describeSize = (size: Size) => `a ${size} computer (${SIZES[size].vcpus} vCPU, ${SIZES[size].memory_mb} MiB)`;

/** The 503 for a size no online host of the region has room for. */
export const noRoom = (region: string, size: Size, reason = 'has room for') =>
  new ApiError('NO_CAPACITY', `no host in region "${region}" ${reason} ${describeSize(size)} now; try again later, or choose a smaller size`);

/** The 503 for a stopped computer whose own host (where its disk is) has no room for it now. */
export const noRoomOnHost = (what: string, size: Size) =>
  new ApiError('NO_CAPACITY', `its host has no room to ${what} ${describeSize(size)} now; try again later, or move the computer to another region`);

export interface HostChoice {
  id: string;
  region: string;
}

/** SQL true when host `h` offers the isolation bound at ?`at` (its agent's hello listed that driver: hosts.drivers, a JSON array). */
const offers = (at: number) => `EXISTS (SELECT 1 FROM json_each(h.drivers) d WHERE d.value = ?${at})`;

/**
 * Online fleet hosts of the region offering `isolation` with room for `size`,
 * the one with the most memory left first; 503 NO_CAPACITY when none is online
 * or none has room, 422 ISOLATION_UNAVAILABLE when no host of the region
 * offers the isolation at all.
 */
export async function hostsWithRoom(env: Env, region: string, size: Size, isolation: Isolation): Promise<HostChoice[]> {
  const o = overcommitOf(env);
  const held = (column: string) => `(SELECT COALESCE(SUM(c.${column}), 0) FROM computers c WHERE c.host_id = h.id AND c.status IN (${RESERVING_SQL}))`;
  const { results } = await env.DB.prepare(
    `SELECT h.id, h.region, h.cpus * ?2 AS cpus, h.memory_mb * ?3 AS memory_mb,
            h.cpus * ?2 - ${held('vcpus')} AS free_cpus, h.memory_mb * ?3 - ${held('memory_mb')} AS free_mb
       FROM hosts h
      WHERE h.kind = 'fleet' AND h.status = 'online' AND h.region = ?1 AND h.cpus IS NOT NULL AND h.memory_mb IS NOT NULL AND ${offers(4)}
      ORDER BY free_mb DESC, h.created_at ASC`,
  )
    .bind(region, o.cpu, o.memory, isolation)
    .all<{ id: string; region: string; free_cpus: number; free_mb: number; cpus: number; memory_mb: number }>();
  if (results.length === 0) await noHostOffering(env, region, isolation);
  const need = SIZES[size];
  const fit = results.filter((h) => h.free_cpus >= need.vcpus && h.free_mb >= need.memory_mb);
  if (fit.length) return fit.map((h) => ({ id: h.id, region: h.region }));
  const everFits = results.some((h) => h.cpus >= need.vcpus && h.memory_mb >= need.memory_mb);
  throw noRoom(region, size, everFits ? 'has room for' : 'is large enough for');
}

/** Why no online host of the region offers the isolation: none ever will (422), or none is online now (503). */
async function noHostOffering(env: Env, region: string, isolation: Isolation): Promise<never> {
  // A host that never said hello may offer it once it does: only hosts that listed their drivers rule it out.
  const maybe = await env.DB.prepare(
    `SELECT 1 AS x FROM hosts h WHERE h.kind = 'fleet' AND h.status != 'revoked' AND h.region = ?1 AND (${offers(2)} OR json_array_length(h.drivers) = 0) LIMIT 1`,
  )
    .bind(region, isolation)
    .first();
  if (!maybe) {
    throw new ApiError('ISOLATION_UNAVAILABLE', `no host in region "${region}" offers isolation "${isolation}"; its hosts' agents would need --driver ${isolation}`);
  }
  const online = await env.DB.prepare(`SELECT 1 AS x FROM hosts h WHERE h.kind = 'fleet' AND h.status = 'online' AND h.region = ?1 LIMIT 1`).bind(region).first();
  throw new ApiError(
    'NO_CAPACITY',
    online
      ? `no host offering isolation "${isolation}" is online in region "${region}"; start a host agent with --driver ${isolation} there and try again`
      : `no host is online in region "${region}"; start a host agent there and try again`,
  );
}

/** The host with the most room for `size` in the region (for a move, which takes room only when the computer starts there). */
export async function pickHost(env: Env, region: string, size: Size, isolation: Isolation): Promise<HostChoice> {
  return (await hostsWithRoom(env, region, size, isolation))[0];
}

/** Whether the computer's host has room for it at `size` now (it holds none itself: it is stopped). */
export async function hasRoom(env: Env, hostId: string, computerId: string, size: Size): Promise<boolean> {
  const row = await env.DB.prepare(`SELECT ${roomSql(1)} AS ok`).bind(...roomArgs(hostId, size, overcommitOf(env), computerId)).first<{ ok: number }>();
  return row?.ok === 1;
}

/**
 * Takes room for a stopped (or errored) computer about to start on its host:
 * its D1 status becomes `starting` only if the room is there, in one
 * statement. False when there is none.
 */
export async function reserveStart(env: Env, hostId: string, computerId: string, size: Size): Promise<boolean> {
  const r = await env.DB.prepare(`UPDATE computers SET status = 'starting', status_reason = NULL, updated_at = ?1 WHERE id = ?2 AND ${roomSql(3)}`)
    .bind(isoNow(), computerId, ...roomArgs(hostId, size, overcommitOf(env), computerId))
    .run();
  return r.meta.changes === 1;
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
