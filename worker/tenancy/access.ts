/**
 * Tenant access checks for route handlers. A resource of another
 * organization is "not found" (404: its existence is not the caller's
 * business); a resource of the caller's own organization outside the
 * credential's workspace/project scope is 403.
 */
import { ApiError } from '../../schema/errors.ts';
import type { Principal } from '../middleware/principal.ts';

export function assertWorkspaceInScope(p: Principal, workspaceId: string): void {
  if (p.workspace_ids && !p.workspace_ids.includes(workspaceId)) {
    throw new ApiError('FORBIDDEN', `this credential is not allowed to act in workspace ${workspaceId}`);
  }
}

export function assertProjectInScope(p: Principal, projectId: string): void {
  if (p.project_ids && !p.project_ids.includes(projectId)) {
    throw new ApiError('FORBIDDEN', `this credential is not allowed to act in project ${projectId}`);
  }
}

export interface OwnedRow {
  org_id: string;
  workspace_id: string;
  project_id: string;
}

/**
 * Returns the row when the principal may act on it: 404 `<what> not found`
 * when it is missing or belongs to another organization, 403 when it is in
 * the organization but outside the credential's scope.
 */
export function requireOwned<T extends OwnedRow>(p: Principal, row: T | null | undefined, what: string, id?: string): T {
  if (!row || row.org_id !== p.org_id) {
    throw new ApiError('NOT_FOUND', id ? `${what} ${id} not found` : `${what} not found`);
  }
  assertWorkspaceInScope(p, row.workspace_id);
  assertProjectInScope(p, row.project_id);
  return row;
}
