/**
 * Operator API: fleet hosts (machines the operator runs computers on). The
 * host key is in the register response only; the agent then runs
 * `hangar-agent --api https://… --key hk_…`. Revoking keeps the row and
 * refuses the key from then on.
 */
import { RegisterHost } from '../../schema/api-admin.ts';
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { isoNow } from '../http/ids.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { json } from '../http/responses.ts';
import { route, type RouteDef } from '../router.ts';
import { insertHost } from '../tenancy/keys.ts';
import { pagedQuery } from '../http/paged-query.ts';

const BASE = '/api/v1/admin/hosts';
const COLUMNS = 'id, org_id, kind, name, region, labels, status, key_prefix, agent_version, drivers, vm_accel, cpus, memory_mb, last_seen_at, created_at, updated_at';

interface HostRow {
  id: string;
  org_id: string | null;
  kind: 'fleet' | 'byo';
  name: string;
  region: string;
  labels: string;
  status: string;
  key_prefix: string;
  agent_version: string | null;
  drivers: string;
  vm_accel: 'kvm' | 'tcg' | null;
  cpus: number | null;
  memory_mb: number | null;
  last_seen_at: string | null;
  created_at: string;
  updated_at: string;
}

const hostView = (h: HostRow) => ({
  ...h,
  labels: JSON.parse(h.labels) as Record<string, string>,
  drivers: JSON.parse(h.drivers) as string[],
});

async function requireHost(env: Env, id: string): Promise<HostRow> {
  const row = await env.DB.prepare(`SELECT ${COLUMNS} FROM hosts WHERE id = ?`).bind(id).first<HostRow>();
  if (!row) throw new ApiError('NOT_FOUND', `host ${id} not found`);
  return row;
}

const HOST_STATUSES = new Set(['pending', 'online', 'offline', 'error', 'revoked']);

export const ADMIN_HOST_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: BASE,
    auth: 'operator',
    body: RegisterHost,
    handler: async (c) => {
      const host = await insertHost(c.env.DB, { org_id: null, kind: 'fleet', name: c.body.name, region: c.body.region, labels: c.body.labels });
      // The only time the secret leaves the server.
      return json({ data: { ...hostView(await requireHost(c.env, host.id)), host_key: host.key } }, 201);
    },
  }),
  route({
    method: 'GET',
    path: BASE,
    auth: 'operator',
    handler: async (c) => {
      const page = readPage(c.query);
      const where: string[] = [];
      const args: string[] = [];
      const status = c.query.get('status');
      if (status !== null) {
        if (!HOST_STATUSES.has(status)) throw new ApiError('VALIDATION_FAILED', `status: must be one of ${[...HOST_STATUSES].join(', ')}`);
        where.push('status = ?');
        args.push(status);
      }
      const region = c.query.get('region');
      if (region !== null) {
        where.push('region = ?');
        args.push(region);
      }
      const { rows, total } = await pagedQuery<HostRow>(c.env, { columns: COLUMNS, from: 'hosts', where: where.join(' AND '), args, orderBy: 'created_at, rowid' }, page);
      return json({ data: rows.map(hostView), page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:host_id`,
    auth: 'operator',
    handler: async (c) => json({ data: hostView(await requireHost(c.env, c.params.host_id)) }),
  }),
  route({
    method: 'DELETE',
    path: `${BASE}/:host_id`,
    auth: 'operator',
    handler: async (c) => {
      const host = await requireHost(c.env, c.params.host_id);
      await c.env.DB.prepare(`UPDATE hosts SET status = 'revoked', updated_at = ? WHERE id = ?`).bind(isoNow(), host.id).run();
      return json({ data: hostView(await requireHost(c.env, host.id)) });
    },
  }),
];
