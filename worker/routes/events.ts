/**
 * The organization's event stream (issue 11): GET /events (and /events/stream,
 * as an SDK calls it) is every event of the caller's computers as Server-Sent
 * Events, narrowed by workspace, project, computer and type. A credential
 * bound to workspaces or projects sees only theirs.
 */
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import { Slug } from '../../schema/api-tenancy.ts';
import { validate } from '../http/body.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { openEventStream, typesOf } from '../events/open-stream.ts';
import { requireComputerId } from '../computers/access.ts';

const EventQuery = z.object({
  workspace_id: z.uuid().optional(),
  workspace_slug: Slug.optional(),
  project_id: z.uuid().optional(),
  project_slug: Slug.optional(),
  computer_id: z.string().optional(),
});

/** The ids a slug names in the organization (none when it names nothing: the stream is then empty). */
async function idsOfSlug(c: RouteContext, table: 'workspaces' | 'projects', slug: string): Promise<string[]> {
  const rows = await c.env.DB.prepare(`SELECT id FROM ${table} WHERE org_id = ? AND slug = ?`).bind(c.principal.org_id, slug).all<{ id: string }>();
  return rows.results.map((r) => r.id);
}

async function stream(c: RouteContext): Promise<Response> {
  const p = c.principal;
  const q = validate(EventQuery, Object.fromEntries(Object.keys(EventQuery.shape).map((k) => [k, c.query.get(k) ?? undefined])), 'query');
  for (const [id, scope, what] of [[q.workspace_id, p.workspace_ids, 'workspace'], [q.project_id, p.project_ids, 'project']] as const) {
    if (id && scope && !scope.includes(id)) throw new ApiError('FORBIDDEN', `this credential is not allowed to see ${what} ${id}`);
  }
  const workspaceIds = q.workspace_id ? [q.workspace_id] : q.workspace_slug ? await idsOfSlug(c, 'workspaces', q.workspace_slug) : undefined;
  const projectIds = q.project_id ? [q.project_id] : q.project_slug ? await idsOfSlug(c, 'projects', q.project_slug) : undefined;
  return openEventStream(c, c.env, p.org_id, {
    kind: 'computer',
    refs: q.computer_id ? { computer_id: requireComputerId(q.computer_id) } : {},
    workspace_ids: workspaceIds,
    project_ids: projectIds,
    scope_workspace_ids: p.workspace_ids,
    scope_project_ids: p.project_ids,
    types: typesOf(c.query),
  }, { credential_id: p.credential_id });
}

export const EVENT_ROUTES: RouteDef[] = ['/api/v1/events', '/api/v1/events/stream'].map((path) => route({ method: 'GET', path, auth: 'tenant', handler: stream }));
