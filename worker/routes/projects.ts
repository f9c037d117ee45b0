/**
 * Tenant API: projects (apps, websites, documents, workflows inside a
 * workspace). Creating one names its workspace with the usual selectors
 * (workspace_id, or workspace_slug auto-created with workspace_name, else the
 * default workspace). Lists take the ownership filters.
 */
import { CreateProject } from '../../schema/api-tenancy.ts';
import { ApiError } from '../../schema/errors.ts';
import { isUuid, newId, slugify } from '../http/ids.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { json } from '../http/responses.ts';
import { route, type RouteDef } from '../router.ts';
import { requireOwned } from '../tenancy/access.ts';
import { ownershipFilters, resolveWorkspace } from '../tenancy/ownership.ts';
import { pagedQuery } from '../http/paged-query.ts';
import { getProject, insertProject, type ProjectRow } from '../tenancy/workspaces.ts';

export const projectView = (p: ProjectRow) => ({
  id: p.id,
  workspace_id: p.workspace_id,
  project_id: p.id,
  slug: p.slug,
  name: p.name,
  is_default: Boolean(p.is_default),
  created_at: p.created_at,
  updated_at: p.updated_at,
});

// A project row is its own project: its id plays the project_id column.
const asOwned = (p: ProjectRow) => ({ ...p, project_id: p.id });

export const PROJECT_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/projects',
    auth: 'tenant',
    handler: async (c) => {
      const page = readPage(c.query);
      const f = ownershipFilters(c.env, c.principal, c.query, {
        project_id: 'id',
        external_workspace_id: null,
        external_user_id: null,
        external_project_id: null,
      });
      const { rows, total } = await pagedQuery<ProjectRow>(c.env, { columns: '*', from: 'projects', where: f.sql, args: f.args, orderBy: 'created_at, rowid' }, page);
      return json({ data: rows.map(projectView), page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/projects',
    auth: 'tenant',
    body: CreateProject,
    handler: async (c) => {
      // A workspace-scoped key may add projects to its workspaces (resolveWorkspace checks which); a project-scoped one may not.
      if (c.principal.project_ids) throw new ApiError('FORBIDDEN', 'this credential is scoped to specific projects and may not create projects');
      const ws = await resolveWorkspace(c.env, c.principal, c.body);
      const id = newId();
      const slug = c.body.slug ?? slugify(c.body.name);
      if (!(await insertProject(c.env, c.principal.org_id, ws.id, slug, c.body.name, false, id))) {
        throw new ApiError('CONFLICT', `a project with slug ${slug} already exists in workspace ${ws.slug}`);
      }
      const row = await getProject(c.env, c.principal.org_id, id);
      if (!row) throw new Error(`project ${id} vanished right after it was created`);
      return json({ data: projectView(row) }, 201);
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/projects/:id',
    auth: 'tenant',
    handler: async (c) => {
      const id = c.params.id;
      const row = isUuid(id) ? await getProject(c.env, c.principal.org_id, id) : null;
      return json({ data: projectView(requireOwned(c.principal, row && asOwned(row), 'project', id)) });
    },
  }),
];
