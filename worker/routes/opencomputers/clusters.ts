/**
 * Inference clusters (spec/05, Inference Clusters; docs/clusters.md): a
 * tenant groups its hosts to serve one model at an OpenAI-compatible URL.
 * Creating a cluster starts it; stop lets the hosts drop the model (the URL
 * answers 503 meanwhile), start asks them again; delete stops and forgets
 * it (204). The status shown is the members': `provisioning` while they
 * load, `active` while any serves, `error` when none can (each member says
 * why), `stopped` after stop.
 */
import { CreateCluster, slugFrom } from '../../../schema/api-clusters.ts';
import { ApiError } from '../../../schema/errors.ts';
import { isoNow, newId } from '../../http/ids.ts';
import { pagedQuery } from '../../http/paged-query.ts';
import { pageInfo, readPage } from '../../http/pagination.ts';
import { json } from '../../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { CLUSTER_COLUMNS, clusterView, loadCluster, startMembers, stopMembers, type ClusterRow } from '../../clusters/cluster-access.ts';
import { requireHostId, single } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

const BASE = `${OC_BASE}/clusters`;

/** The member hosts, each one of the caller's tenant hosts and not revoked; duplicates count once. */
async function memberHosts(c: RouteContext<CreateCluster>): Promise<string[]> {
  const ids = [...new Set(c.body.host_ids.map(requireHostId))];
  const placeholders = ids.map(() => '?').join(', ');
  const { results } = await c.env.DB.prepare(`SELECT id, status FROM hosts WHERE org_id = ? AND kind = 'byo' AND id IN (${placeholders})`)
    .bind(c.principal.org_id, ...ids)
    .all<{ id: string; status: string }>();
  const found = new Map(results.map((r) => [r.id, r.status]));
  for (const id of ids) {
    if (!found.has(id)) throw new ApiError('NOT_FOUND', `host ${id} not found`);
    if (found.get(id) === 'revoked') throw new ApiError('CONFLICT', `host ${id} is revoked; a cluster cannot use it`);
  }
  return ids;
}

/** The slug asked for (409 when taken), or one made from the name, made unique with a suffix when needed. */
async function freeSlug(c: RouteContext<CreateCluster>, id: string): Promise<string> {
  const taken = async (s: string) => (await c.env.DB.prepare('SELECT 1 AS x FROM clusters WHERE slug = ?').bind(s).first()) !== null;
  if (c.body.slug) {
    if (await taken(c.body.slug)) throw new ApiError('CONFLICT', `the slug "${c.body.slug}" is taken; choose another or leave it out`);
    return c.body.slug;
  }
  const base = slugFrom(c.body.name) || 'cluster';
  if (!(await taken(base))) return base;
  return `${base}-${id.slice(0, 8)}`;
}

async function view(c: RouteContext<unknown>, row: ClusterRow) {
  return single(await clusterView(c.env, row, c.url.origin));
}

async function setStatus(c: RouteContext<unknown>, row: ClusterRow, status: 'provisioning' | 'stopped'): Promise<ClusterRow> {
  const now = isoNow();
  await c.env.DB.prepare('UPDATE clusters SET status = ?, updated_at = ? WHERE id = ?').bind(status, now, row.id).run();
  return { ...row, status, updated_at: now };
}

export const CLUSTER_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: BASE,
    auth: 'tenant',
    body: CreateCluster,
    handler: async (c) => {
      const hostIds = await memberHosts(c);
      const id = newId();
      const slug = await freeSlug(c, id);
      const now = isoNow();
      const row: ClusterRow = { id, org_id: c.principal.org_id, name: c.body.name, slug, model: c.body.model, status: 'provisioning', host_ids: JSON.stringify(hostIds), created_at: now, updated_at: now };
      try {
        await c.env.DB.prepare(`INSERT INTO clusters (${CLUSTER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .bind(row.id, row.org_id, row.name, row.slug, row.model, row.status, row.host_ids, row.created_at, row.updated_at)
          .run();
      } catch (e) {
        // Two creations raced for the same slug.
        if (String((e as Error).message).includes('UNIQUE')) throw new ApiError('CONFLICT', `the slug "${slug}" is taken; choose another`);
        throw e;
      }
      await startMembers(c.env, row);
      return json(await view(c, row), 201);
    },
  }),
  route({
    method: 'GET',
    path: BASE,
    auth: 'tenant',
    handler: async (c) => {
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<ClusterRow>(
        c.env,
        { columns: CLUSTER_COLUMNS, from: 'clusters', where: 'org_id = ?', args: [c.principal.org_id], orderBy: 'created_at DESC, rowid DESC' },
        page,
      );
      const data = await Promise.all(rows.map((r) => clusterView(c.env, r, c.url.origin)));
      return json({ data, meta: { total, page: page.page, per_page: page.page_size }, page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:id`,
    auth: 'tenant',
    handler: async (c) => json(await view(c, await loadCluster(c.env, c.principal, c.params.id))),
  }),
  route({
    method: 'POST',
    path: `${BASE}/:id/start`,
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadCluster(c.env, c.principal, c.params.id);
      const next = row.status === 'stopped' ? await setStatus(c, row, 'provisioning') : row;
      await startMembers(c.env, next);
      return json(await view(c, next));
    },
  }),
  route({
    method: 'POST',
    path: `${BASE}/:id/stop`,
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadCluster(c.env, c.principal, c.params.id);
      const next = await setStatus(c, row, 'stopped');
      await stopMembers(c.env, next);
      return json(await view(c, next));
    },
  }),
  route({
    method: 'DELETE',
    path: `${BASE}/:id`,
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadCluster(c.env, c.principal, c.params.id);
      await stopMembers(c.env, row);
      await c.env.DB.prepare('DELETE FROM clusters WHERE id = ?').bind(row.id).run();
      return new Response(null, { status: 204 });
    },
  }),
];
