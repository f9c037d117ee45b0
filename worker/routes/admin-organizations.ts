/** Operator API: organizations (tenants). Creating one also creates its default workspace and project. */
import { CreateOrganization, UpdateOrganization } from '../../schema/api-admin.ts';
import type { z } from 'zod';
import { isoNow } from '../http/ids.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { json } from '../http/responses.ts';
import { route, type RouteDef } from '../router.ts';
import { pagedQuery } from '../http/paged-query.ts';
import { ORG_COLUMNS, createOrganization, organizationView, requireOrganization, type OrganizationRow } from '../tenancy/organizations.ts';
import { forgetCachedOrg } from '../tenancy/principals.ts';

const BASE = '/api/v1/admin/organizations';

export const ADMIN_ORGANIZATION_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: BASE,
    auth: 'operator',
    body: CreateOrganization,
    handler: async (c) => json({ data: organizationView(await createOrganization(c.env, c.body)) }, 201),
  }),
  route({
    method: 'GET',
    path: BASE,
    auth: 'operator',
    handler: async (c) => {
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<OrganizationRow>(c.env, { columns: ORG_COLUMNS, from: 'organizations o', orderBy: 'o.created_at, o.rowid' }, page);
      return json({ data: rows.map(organizationView), page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:org_id`,
    auth: 'operator',
    handler: async (c) => json({ data: organizationView(await requireOrganization(c.env, c.params.org_id)) }),
  }),
  route({
    method: 'PATCH',
    path: `${BASE}/:org_id`,
    auth: 'operator',
    body: UpdateOrganization,
    handler: async (c) => {
      const org = await requireOrganization(c.env, c.params.org_id);
      const b: z.infer<typeof UpdateOrganization> = c.body;
      await c.env.DB.prepare('UPDATE organizations SET name = ?, rate_limit_per_minute = ?, updated_at = ? WHERE id = ?')
        .bind(b.name ?? org.name, b.rate_limit_per_minute === undefined ? org.rate_limit_per_minute : b.rate_limit_per_minute, isoNow(), org.id)
        .run();
      forgetCachedOrg(org.id);
      return json({ data: organizationView(await requireOrganization(c.env, org.id)) });
    },
  }),
];
