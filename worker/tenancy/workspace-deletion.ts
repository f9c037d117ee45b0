/**
 * Deleting a workspace. Its computers must be deleted first (each deletion
 * ends what was minted for that computer); the workspace's projects go with
 * it. API keys scoped to it lose it from their scope, and a key whose whole
 * scope was in it is revoked — with everything minted from it
 * (worker/credentials/revocation.ts) — rather than left with a scope that
 * silently means "the whole organization" or nothing.
 */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { isoNow } from '../http/ids.ts';
import { endCredential } from '../credentials/revocation.ts';
import { forgetCachedKey, parseIdList } from './principals.ts';
import type { WorkspaceRow } from './workspaces.ts';

interface ScopedKey {
  id: string;
  workspace_ids: string | null;
  project_ids: string | null;
}

export async function deleteWorkspace(env: Env, ws: WorkspaceRow): Promise<void> {
  if (ws.is_default) throw new ApiError('CONFLICT', 'the default workspace cannot be deleted');
  const inUse = await env.DB.prepare('SELECT COUNT(*) AS n FROM computers WHERE workspace_id = ?').bind(ws.id).first<{ n: number }>();
  if (inUse && inUse.n > 0) throw new ApiError('CONFLICT', `workspace ${ws.slug} still has ${inUse.n} computer(s); delete them first`);

  const [projects, keys] = await env.DB.batch([
    env.DB.prepare('SELECT id FROM projects WHERE workspace_id = ?').bind(ws.id),
    env.DB.prepare('SELECT id, workspace_ids, project_ids FROM api_keys WHERE org_id = ? AND revoked_at IS NULL AND (workspace_ids IS NOT NULL OR project_ids IS NOT NULL)').bind(ws.org_id),
  ]);
  const gone = new Set([ws.id, ...(projects.results as { id: string }[]).map((p) => p.id)]);
  const now = isoNow();
  const revoked: string[] = [];
  const narrowed: string[] = [];
  const updates: D1PreparedStatement[] = [];
  for (const key of keys.results as ScopedKey[]) {
    const workspaces = parseIdList(key.workspace_ids);
    const projectIds = parseIdList(key.project_ids);
    const keptWorkspaces = workspaces?.filter((w) => !gone.has(w)) ?? null;
    const keptProjects = projectIds?.filter((p) => !gone.has(p)) ?? null;
    if (keptWorkspaces?.length === workspaces?.length && keptProjects?.length === projectIds?.length) continue;
    if (keptWorkspaces?.length === 0 || keptProjects?.length === 0) {
      revoked.push(key.id);
      updates.push(env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').bind(now, key.id));
    } else {
      narrowed.push(key.id);
      updates.push(
        env.DB.prepare('UPDATE api_keys SET workspace_ids = ?, project_ids = ? WHERE id = ?').bind(
          keptWorkspaces && JSON.stringify(keptWorkspaces),
          keptProjects && JSON.stringify(keptProjects),
          key.id,
        ),
      );
    }
  }
  // A computer created into the workspace since the count above keeps it (and the answer says why).
  const empty = 'NOT EXISTS (SELECT 1 FROM computers WHERE workspace_id = ?)';
  const [, deleted] = await env.DB.batch([
    env.DB.prepare(`DELETE FROM projects WHERE workspace_id = ? AND ${empty}`).bind(ws.id, ws.id),
    env.DB.prepare(`DELETE FROM workspaces WHERE id = ? AND ${empty}`).bind(ws.id, ws.id),
  ]);
  if (!deleted.meta.changes) throw new ApiError('CONFLICT', `workspace ${ws.slug} still has computers; delete them first`);
  if (updates.length) await env.DB.batch(updates);
  for (const id of narrowed) forgetCachedKey(id);
  for (const id of revoked) await endCredential(env, ws.org_id, id);
}
