/** Computers: create, list, get, update, delete (spec/02-computers.txt). */
import { ApiError, unwrap } from '../../schema/errors.ts';
import { CreateComputer, UpdateComputer, type ComputerVisibility } from '../../schema/api.ts';
import { SIZES, type Size } from '../../schema/sizes.ts';
import { diskGbFor, diskGbOf } from '../computers/disk-size.ts';
import type { Env } from '../env.ts';
import { json } from '../http/responses.ts';
import { isoNow, newId, slugify } from '../http/ids.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { pagedQuery } from '../http/paged-query.ts';
import { route, type RouteDef } from '../router.ts';
import { ownershipFilters, resolveOwnership } from '../tenancy/ownership.ts';
import { callerOf, computerStub, loadComputer, parseRow } from '../computers/access.ts';
import { computerResource, computerView } from '../computers/view.ts';
import { computerSlug } from '../computers/urls.ts';
import { defaultIsolation, hostsWithRoom, noRoom, overcommitOf, regionExists, roomArgs, roomSql, type HostChoice } from '../computers/placement.ts';
import { balanceOf } from '../../durable-objects/computer/usage.ts';
import { STATUSES } from '../../durable-objects/computer/state-table.ts';
import type { Principal } from '../middleware/principal.ts';
import type { ComputerRow } from '../../schema/db.ts';
import { DEFAULT_RESOLUTION } from '../../schema/desktop.ts';
import type { Isolation } from '../../schema/isolation.ts';

export interface NewComputer {
  name: string;
  template_type: string;
  size: keyof typeof SIZES;
  isolation: Isolation;
  selected_apps: string[];
  workspace_id: string;
  project_id: string;
  /** Where it may run: any host of the region with room, or (a clone, whose disk is copied there) one host. */
  placement: { region: string } | { host: HostChoice };
  auto_stop: number;
  external_workspace_id: string | null;
  external_user_id: string | null;
  external_project_id: string | null;
  metadata: Record<string, string>;
  visibility: ComputerVisibility;
  /** The desktop's screen, WIDTHxHEIGHT. */
  resolution: string;
  clone_from?: string;
  /** The new computer's disk is a copy of this snapshot (on the placement's host). */
  restore_snapshot?: string;
  /** A disk quota it needs at least (the snapshot's disk it starts from). */
  min_disk_gb?: number;
}

/**
 * Inserts the row (provisioning) on a host with room for it — the room is
 * taken by the insert itself — and hands the computer to its Durable Object,
 * which brings the agent in. 503 NO_CAPACITY when no host has room.
 */
export async function insertComputer(env: Env, p: Principal, n: NewComputer): Promise<ComputerRow> {
  if ((await balanceOf(env.DB, p.org_id)) <= 0) throw new ApiError('INSUFFICIENT_CREDITS', 'not enough credits to create a computer');
  const id = newId();
  const now = isoNow();
  const size = SIZES[n.size];
  const o = overcommitOf(env);
  // A clone starts as a copy of its source's disk, so it is at least as large.
  const source = n.clone_from ? await env.DB.prepare('SELECT disk_gb, size FROM computers WHERE id = ?').bind(n.clone_from).first<{ disk_gb: number | null; size: Size }>() : null;
  const disk_gb = Math.max(diskGbFor(env, n.size), source ? diskGbOf(source) : 0, n.min_disk_gb ?? 0);
  const candidates = 'host' in n.placement ? [n.placement.host] : await hostsWithRoom(env, n.placement.region, n.size, n.isolation);
  let host: HostChoice | null = null;
  for (const h of candidates) {
    const r = await env.DB.prepare(
      `INSERT INTO computers (id, org_id, workspace_id, project_id, owner_user_id, name, slug, template_type, size, vcpus, memory_mb, disk_gb, isolation, status,
         host_id, region, external_workspace_id, external_user_id, external_project_id, selected_apps, auto_stop, metadata, visibility, resolution, created_at, updated_at)
       SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'provisioning', ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?24
        WHERE ${roomSql(25)}`,
    )
      .bind(id, p.org_id, n.workspace_id, n.project_id, p.subject, n.name, computerSlug(slugify(n.name), id), n.template_type, n.size, size.vcpus, size.memory_mb, disk_gb,
        n.isolation, h.id, h.region, n.external_workspace_id, n.external_user_id, n.external_project_id,
        JSON.stringify(n.selected_apps), n.auto_stop, JSON.stringify(n.metadata), n.visibility, n.resolution, now, ...roomArgs(h.id, n.size, o, id))
      .run();
    if (r.meta.changes === 1) {
      host = h;
      break;
    }
  }
  // Every candidate filled up between the look and the insert (or the clone's host has no room).
  if (!host) throw noRoom('host' in n.placement ? n.placement.host.region : n.placement.region, n.size);
  const created = await computerStub(env, id).create({
    id,
    org_id: p.org_id,
    workspace_id: n.workspace_id,
    project_id: n.project_id,
    name: n.name,
    template_type: n.template_type,
    size: n.size,
    vcpus: size.vcpus,
    memory_mb: size.memory_mb,
    isolation: n.isolation,
    disk_gb,
    selected_apps: n.selected_apps,
    host_id: host.id,
    status: 'provisioning',
    auto_stop: n.auto_stop,
    resolution: n.resolution,
    clone_from: n.clone_from,
    restore_snapshot: n.restore_snapshot,
  });
  unwrap(created);
  return loadComputer(env, p, id);
}

export const COMPUTER_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: '/api/v1/computers',
    auth: 'tenant',
    body: CreateComputer,
    handler: async (c) => {
      const b = c.body;
      // A region no host was ever registered in is the caller's mistake, not a capacity problem to retry.
      if (b.region !== undefined && !(await regionExists(c.env, b.region))) {
        throw new ApiError('REGION_UNAVAILABLE', `unknown region "${b.region}": no host serves it`);
      }
      const owner = await resolveOwnership(c.env, c.principal, b);
      const isolation = b.isolation ?? defaultIsolation(c.env);
      const row = await insertComputer(c.env, c.principal, {
        ...b,
        isolation,
        ...owner,
        placement: { region: b.region ?? c.env.DEFAULT_REGION },
        auto_stop: b.auto_stop ?? 0,
        external_workspace_id: b.external_workspace_id ?? null,
        external_user_id: b.external_user_id ?? null,
        external_project_id: b.external_project_id ?? null,
        metadata: b.metadata ?? {},
        visibility: b.visibility ?? 'public',
        resolution: b.resolution ?? DEFAULT_RESOLUTION,
      });
      return json(computerResource(row, c.env), 201);
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers',
    auth: 'tenant',
    handler: async (c) => {
      const page = readPage(c.query);
      const f = ownershipFilters(c.env, c.principal, c.query);
      const statuses = statusFilter(c.query);
      const where = statuses.length ? `${f.sql} AND status IN (${statuses.map(() => '?').join(', ')})` : f.sql;
      const { rows, total: n } = await pagedQuery<Parameters<typeof parseRow>[0]>(
        c.env,
        { columns: '*', from: 'computers', where, args: [...f.args, ...statuses], orderBy: 'created_at DESC, id' },
        page,
      );
      const items = rows.map((r) => computerView(parseRow(r), c.env));
      // The computers page's {computers,total} and the conventions page's {data,page}, side by side.
      return json({ computers: items, total: n, data: items, page: pageInfo(page, n) });
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers/:id',
    auth: 'tenant',
    handler: async (c) => json(computerResource(await loadComputer(c.env, c.principal, c.params.id), c.env)),
  }),
  ...(['PATCH', 'PUT'] as const).map((method) =>
    route({
      method,
      path: '/api/v1/computers/:id',
      auth: 'tenant',
      body: UpdateComputer,
      handler: async (c) => {
        const row = await loadComputer(c.env, c.principal, c.params.id);
        const b = c.body;
        await c.env.DB.prepare('UPDATE computers SET agent_session_id = ?, name = ?, metadata = ?, visibility = ?, updated_at = ? WHERE id = ?')
          .bind(
            b.agent_session_id === undefined ? row.agent_session_id : b.agent_session_id,
            b.name ?? row.name,
            JSON.stringify(b.metadata ?? row.metadata),
            b.visibility ?? row.visibility,
            isoNow(),
            row.id,
          )
          .run();
        return json(computerResource(await loadComputer(c.env, c.principal, row.id), c.env));
      },
    }),
  ),
  route({
    method: 'DELETE',
    path: '/api/v1/computers/:id',
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      unwrap(await computerStub(c.env, row.id).destroy(callerOf(c.principal)));
      await c.env.DB.prepare('DELETE FROM computers WHERE id = ?').bind(row.id).run();
      return json({ id: row.id, deleted: true });
    },
  }),
];

/** `?status=running` or `?status=running,stopped` (`active`, an SDK's name for running, too); empty when absent. */
function statusFilter(query: URLSearchParams): string[] {
  const raw = query.get('status');
  if (raw === null) return [];
  const names = raw.split(',').map((s) => (s.trim() === 'active' ? 'running' : s.trim()));
  const bad = names.find((s) => !(STATUSES as readonly string[]).includes(s));
  if (bad !== undefined) throw new ApiError('VALIDATION_FAILED', `status: unknown status ${JSON.stringify(bad)}; one or more (comma-separated) of ${STATUSES.join(', ')}`);
  return [...new Set(names)];
}
