/**
 * OpenComputers hosts (spec/05, Hosts): a tenant registers a machine it owns
 * and gets a host key (`hk_…`, shown once, stored as a hash) for the agent it
 * runs there. Tenant hosts are never used to place managed computers
 * (placement takes fleet hosts only). Revoking closes the agent's socket at
 * once and the key never authenticates again; the host stays listed as
 * `revoked`.
 */
import { RegisterTenantHost, UpdateTenantHost } from '../../../schema/api-opencomputers.ts';
import { ApiError } from '../../../schema/errors.ts';
import { isoNow } from '../../http/ids.ts';
import { pagedQuery } from '../../http/paged-query.ts';
import { pageInfo, readPage } from '../../http/pagination.ts';
import { json } from '../../http/responses.ts';
import { route, type RouteDef } from '../../router.ts';
import { insertHost } from '../../tenancy/keys.ts';
import { HOST_NOT_FOUND, TENANT_HOST_COLUMNS, hostStub, hostView, loadTenantHost, requireHostId, single, type TenantHostRow } from './host-access.ts';

export const OC_BASE = '/api/v1/opencomputers';
const BASE = `${OC_BASE}/hosts`;

export const HOST_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: BASE,
    auth: 'tenant',
    body: RegisterTenantHost,
    handler: async (c) => {
      const { id, key } = await insertHost(c.env.DB, { org_id: c.principal.org_id, kind: 'byo', name: c.body.name, region: c.body.region ?? c.env.DEFAULT_REGION, labels: c.body.labels });
      const host = await loadTenantHost(c.env, c.principal, id);
      // The only time the key leaves the server.
      return json(single({ ...hostView(host), host_key: key }), 201);
    },
  }),
  route({
    method: 'GET',
    path: BASE,
    auth: 'tenant',
    handler: async (c) => {
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<TenantHostRow>(
        c.env,
        { columns: TENANT_HOST_COLUMNS, from: 'hosts', where: `org_id = ? AND kind = 'byo'`, args: [c.principal.org_id], orderBy: 'created_at DESC, rowid DESC' },
        page,
      );
      // The hosts page's `meta`, and the conventions page's `page`.
      return json({ data: rows.map(hostView), meta: { total, page: page.page, per_page: page.page_size }, page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:id`,
    auth: 'tenant',
    handler: async (c) => json(single(hostView(await loadTenantHost(c.env, c.principal, c.params.id)))),
  }),
  route({
    method: 'PATCH',
    path: `${BASE}/:id`,
    auth: 'tenant',
    body: UpdateTenantHost,
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      await c.env.DB.prepare('UPDATE hosts SET name = ?, region = ?, labels = ?, updated_at = ? WHERE id = ?')
        .bind(c.body.name ?? host.name, c.body.region ?? host.region, c.body.labels ? JSON.stringify(c.body.labels) : host.labels, isoNow(), host.id)
        .run();
      return json(single(hostView(await loadTenantHost(c.env, c.principal, host.id))));
    },
  }),
  route({
    method: 'DELETE',
    path: `${BASE}/:id`,
    auth: 'tenant',
    handler: async (c) => {
      const id = requireHostId(c.params.id);
      // The key stops working with this write: the agent route refuses revoked hosts.
      const now = isoNow();
      const r = await c.env.DB.prepare(
        `UPDATE hosts SET status = 'revoked', status_reason = 'revoked by its tenant', revoked_at = COALESCE(revoked_at, ?), updated_at = ? WHERE id = ? AND org_id = ? AND kind = 'byo'`,
      )
        .bind(now, now, id, c.principal.org_id)
        .run();
      if (!r.meta.changes) throw new ApiError('NOT_FOUND', HOST_NOT_FOUND);
      await hostStub(c.env, id).revoke({ id, org_id: c.principal.org_id });
      return new Response(null, { status: 204 });
    },
  }),
];
