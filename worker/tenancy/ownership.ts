/**
 * Ownership selectors of create endpoints (conventions page, "Ownership
 * fields"): which workspace and project a new resource belongs to, plus the
 * caller's own external ids recorded as attribution.
 *
 * Workspace: workspace_id (must exist in the org, else 404) > workspace_slug
 * (existing, or auto-created with workspace_name) > the credential's only
 * workspace > the org's default workspace (created on first need).
 * Project: project_id (must exist in the org; it also fixes the workspace) >
 * project_slug in that workspace (existing, or auto-created with
 * project_name) > the credential's only project > the workspace's default.
 * Anything outside the credential's scope is 403; a scoped credential may not
 * auto-create, since what it created would be outside its own scope.
 */
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import type { Principal } from '../middleware/principal.ts';
import { Slug } from '../../schema/api-tenancy.ts';
import { DisplayName, PlainText } from '../../schema/text.ts';
import { assertProjectInScope, assertWorkspaceInScope } from './access.ts';
import {
  ensureDefaultProject,
  ensureDefaultWorkspace,
  findProjectBySlug,
  findWorkspaceBySlug,
  getOrCreateProject,
  getOrCreateWorkspace,
  getProject,
  getWorkspace,
  type ProjectRow,
  type WorkspaceRow,
} from './workspaces.ts';

export { Slug };

export const OwnershipSelectors = z.object({
  workspace_id: z.uuid().optional(),
  workspace_slug: Slug.optional(),
  workspace_name: DisplayName.optional(),
  project_id: z.uuid().optional(),
  project_slug: Slug.optional(),
  project_name: DisplayName.optional(),
  external_workspace_id: PlainText(255).optional(),
  external_user_id: PlainText(255).optional(),
  external_project_id: PlainText(255).optional(),
});
export type OwnershipSelectors = z.infer<typeof OwnershipSelectors>;

/** Where a new resource lives; external_* attribution is stored by the caller from the body as given. */
export interface Ownership {
  workspace_id: string;
  project_id: string;
}

/** Resolves (and where allowed auto-creates) the workspace and project a new resource belongs to. */
export async function resolveOwnership(env: Env, p: Principal, sel: OwnershipSelectors): Promise<Ownership> {
  const { workspace, project } = await resolveWorkspaceAndProject(env, p, sel);
  assertWorkspaceInScope(p, workspace.id);
  assertProjectInScope(p, project.id);
  return { workspace_id: workspace.id, project_id: project.id };
}

async function resolveWorkspaceAndProject(env: Env, p: Principal, sel: OwnershipSelectors): Promise<{ workspace: WorkspaceRow; project: ProjectRow }> {
  const namesWorkspace = Boolean(sel.workspace_id || sel.workspace_slug);
  // A project named by id, or the only project the credential may touch, also decides the workspace.
  const pinned = sel.project_id ?? (!sel.project_slug && p.project_ids?.length === 1 ? p.project_ids[0] : undefined);
  if (pinned) {
    const project = await getProject(env, p.org_id, pinned);
    if (!project) {
      if (sel.project_id) throw new ApiError('NOT_FOUND', `project ${pinned} not found`);
      throw new ApiError('FORBIDDEN', 'the only project this credential may use no longer exists');
    }
    if (!namesWorkspace) {
      const workspace = await getWorkspace(env, p.org_id, project.workspace_id);
      if (!workspace) throw new Error(`project ${project.id} points at a missing workspace`);
      return { workspace, project };
    }
    const workspace = await resolveWorkspace(env, p, sel);
    if (workspace.id !== project.workspace_id) {
      if (sel.project_id) throw new ApiError('VALIDATION_FAILED', `project_id ${project.id} belongs to another workspace than ${workspace.slug}`);
      throw new ApiError('FORBIDDEN', `this credential is limited to project ${project.id}, which is not in workspace ${workspace.slug}`);
    }
    return { workspace, project };
  }

  const workspace = await resolveWorkspace(env, p, sel);
  if (sel.project_slug) {
    const existing = await findProjectBySlug(env, workspace.id, sel.project_slug);
    if (existing) return { workspace, project: existing };
    if (p.project_ids) throw new ApiError('FORBIDDEN', `project ${sel.project_slug} does not exist and this credential may not create projects`);
    return { workspace, project: await getOrCreateProject(env, p.org_id, workspace.id, sel.project_slug, sel.project_name ?? sel.project_slug) };
  }
  return { workspace, project: await ensureDefaultProject(env, p.org_id, workspace.id) };
}

/** Resolves only the workspace part of the selectors (checked against the credential's scope). */
export async function resolveWorkspace(env: Env, p: Principal, sel: Pick<OwnershipSelectors, 'workspace_id' | 'workspace_slug' | 'workspace_name'>): Promise<WorkspaceRow> {
  let ws: WorkspaceRow | null;
  if (sel.workspace_id) {
    ws = await getWorkspace(env, p.org_id, sel.workspace_id);
    if (!ws) throw new ApiError('NOT_FOUND', `workspace ${sel.workspace_id} not found`);
  } else if (sel.workspace_slug) {
    ws = await findWorkspaceBySlug(env, p.org_id, sel.workspace_slug);
    if (!ws) {
      // A new workspace holds none of a scoped credential's workspaces or projects, so it could not use it.
      if (p.workspace_ids || p.project_ids) {
        throw new ApiError('FORBIDDEN', `workspace ${sel.workspace_slug} does not exist and this credential may not create workspaces`);
      }
      ws = await getOrCreateWorkspace(env, p.org_id, sel.workspace_slug, sel.workspace_name ?? sel.workspace_slug);
    }
  } else if (p.workspace_ids?.length === 1) {
    ws = await getWorkspace(env, p.org_id, p.workspace_ids[0]);
    if (!ws) throw new ApiError('FORBIDDEN', 'the only workspace this credential may use no longer exists');
  } else {
    ws = await ensureDefaultWorkspace(env, p.org_id);
    if (p.workspace_ids && !p.workspace_ids.includes(ws.id)) {
      throw new ApiError('FORBIDDEN', 'this credential is limited to several workspaces; name one with workspace_id or workspace_slug');
    }
  }
  assertWorkspaceInScope(p, ws.id);
  return ws;
}

export { ownershipFilters, type OwnershipFilter, type FilterColumns } from './ownership-filters.ts';
