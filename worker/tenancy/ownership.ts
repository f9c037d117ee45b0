/** Ownership selectors (workspace/project by id or slug, auto-created by slug). PLACEHOLDER: being replaced. */
import { z } from 'zod';
import type { Env } from '../env.ts';
import type { Principal } from '../middleware/principal.ts';

export const OwnershipSelectors = z.object({
  workspace_id: z.uuid().optional(),
  workspace_slug: z.string().min(1).max(64).optional(),
  workspace_name: z.string().min(1).max(128).optional(),
  project_id: z.uuid().optional(),
  project_slug: z.string().min(1).max(64).optional(),
  project_name: z.string().min(1).max(128).optional(),
  external_workspace_id: z.string().max(255).optional(),
  external_user_id: z.string().max(255).optional(),
  external_project_id: z.string().max(255).optional(),
});
export type OwnershipSelectors = z.infer<typeof OwnershipSelectors>;

export interface Ownership {
  workspace_id: string;
  project_id: string;
}

export async function resolveOwnership(env: Env, p: Principal, _sel: OwnershipSelectors): Promise<Ownership> {
  const ws = await env.DB.prepare('SELECT id FROM workspaces WHERE org_id = ? AND is_default = 1').bind(p.org_id).first<{ id: string }>();
  const pr = await env.DB.prepare('SELECT id FROM projects WHERE workspace_id = ? AND is_default = 1').bind(ws!.id).first<{ id: string }>();
  return { workspace_id: ws!.id, project_id: pr!.id };
}
