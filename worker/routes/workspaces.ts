/**
 * Tenant API: workspaces (the customers/clients inside an organization).
 * Create endpoints of other resources auto-create workspaces by slug; these
 * routes list them and create them explicitly. A credential scoped to some
 * workspaces or projects sees only those and may not create new ones.
 */
import { CreateWorkspace } from '../../schema/api-tenancy.ts';
import { ApiError } from '../../schema/errors.ts';
import type { Principal } from '../middleware/principal.ts';
import type { Env } from '../env.ts';
import { isUuid, newId, slugify } from '../http/ids.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { json } from '../http/responses.ts';
import { route, type RouteDef } from '../router.ts';
import { assertWorkspaceInScope } from '../tenancy/access.ts';
import { pagedQuery } from '../http/paged-query.ts';
import { getWorkspace, insertWorkspace, type WorkspaceRow } from '../tenancy/workspaces.ts';
import { deleteWorkspace } from '../tenancy/workspace-deletion.ts';

export const workspaceView = (w: WorkspaceRow) => ({
  id: w.id,
  workspace_id: w.id,
  slug: w.slug,
  name: w.name,
  is_default: Boolean(w.is_default),
  created_at: w.created_at,
  updated_at: w.updated_at,
});

/** The caller's organization's workspace with this id; 404 otherwise (another organization's too). */
async function requireWorkspace(env: Env, p: Principal, id: string): Promise<WorkspaceRow> {
  const row = isUuid(id) ? await getWorkspace(env, p.org_id, id) : null;
  if (!row) throw new ApiError('NOT_FOUND', `workspace ${id} not found`);
  return row;
}

/** Scoped credentials may only use what the operator gave them. */
export function assertMayCreateTenancy(p: Principal, what: string, verb = 'create'): void {
  if (p.workspace_ids || p.project_ids) throw new ApiError('FORBIDDEN', `this credential is scoped to specific workspaces or projects and may not ${verb} ${what}`);
}

export const WORKSPACE_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/workspaces',
    auth: 'tenant',
    handler: async (c) => {
      const p = c.principal;
      const page = readPage(c.query);
      const where = ['org_id = ?'];
      const args: string[] = [p.org_id];
      const slug = c.query.get('slug');
      if (slug !== null) {
        where.push('slug = ?');
        args.push(slug);
      }
      if (p.workspace_ids) {
        where.push(`id IN (${p.workspace_ids.map(() => '?').join(', ')})`);
        args.push(...p.workspace_ids);
      }
      const { rows, total } = await pagedQuery<WorkspaceRow>(c.env, { columns: '*', from: 'workspaces', where: where.join(' AND '), args, orderBy: 'created_at, rowid' }, page);
      return json({ data: rows.map(workspaceView), page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/workspaces',
    auth: 'tenant',
    body: CreateWorkspace,
    handler: async (c) => {
      assertMayCreateTenancy(c.principal, 'workspaces');
      const id = newId();
      const slug = c.body.slug ?? slugify(c.body.name);
      if (!(await insertWorkspace(c.env, c.principal.org_id, slug, c.body.name, false, id))) {
        throw new ApiError('CONFLICT', `a workspace with slug ${slug} already exists`);
      }
      const row = await getWorkspace(c.env, c.principal.org_id, id);
      if (!row) throw new Error(`workspace ${id} vanished right after it was created`);
      return json({ data: workspaceView(row) }, 201);
    },
  }),
  route({
    method: 'DELETE',
    path: '/api/v1/workspaces/:id',
    auth: 'tenant',
    handler: async (c) => {
      const row = await requireWorkspace(c.env, c.principal, c.params.id);
      assertMayCreateTenancy(c.principal, 'workspaces', 'delete');
      await deleteWorkspace(c.env, row);
      return json({ id: row.id, deleted: true });
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/workspaces/:id',
    auth: 'tenant',
    handler: async (c) => {
      const row = await requireWorkspace(c.env, c.principal, c.params.id);
      assertWorkspaceInScope(c.principal, row.id);
      return json({ data: workspaceView(row) });
    },
  }),
];
