/**
 * Workspace and project rows: lookups scoped to an organization, and
 * get-or-create by slug that is safe under concurrency (insert with
 * ON CONFLICT DO NOTHING on the unique slug, then read back whichever row won).
 */
import type { Env } from '../env.ts';
import { isoNow, newId } from '../http/ids.ts';

export interface WorkspaceRow {
  id: string;
  org_id: string;
  slug: string;
  name: string;
  is_default: number;
  created_at: string;
  updated_at: string;
}

export interface ProjectRow extends WorkspaceRow {
  workspace_id: string;
}

export const DEFAULT_SLUG = 'default';
const DEFAULT_NAME = 'Default';

/** The workspace with this id in this org, or null (ids of other orgs are simply not found). */
export const getWorkspace = (env: Env, orgId: string, id: string) =>
  env.DB.prepare('SELECT * FROM workspaces WHERE id = ? AND org_id = ?').bind(id, orgId).first<WorkspaceRow>();

export const findWorkspaceBySlug = (env: Env, orgId: string, slug: string) =>
  env.DB.prepare('SELECT * FROM workspaces WHERE org_id = ? AND slug = ?').bind(orgId, slug).first<WorkspaceRow>();

export const getProject = (env: Env, orgId: string, id: string) =>
  env.DB.prepare('SELECT * FROM projects WHERE id = ? AND org_id = ?').bind(id, orgId).first<ProjectRow>();

export const findProjectBySlug = (env: Env, workspaceId: string, slug: string) =>
  env.DB.prepare('SELECT * FROM projects WHERE workspace_id = ? AND slug = ?').bind(workspaceId, slug).first<ProjectRow>();

/** Inserts a workspace unless the slug is taken; true when this call created it. */
export async function insertWorkspace(env: Env, orgId: string, slug: string, name: string, isDefault = false, id = newId()): Promise<boolean> {
  const now = isoNow();
  const r = await env.DB.prepare(
    `INSERT INTO workspaces (id, org_id, slug, name, is_default, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (org_id, slug) DO NOTHING`,
  )
    .bind(id, orgId, slug, name, isDefault ? 1 : 0, now, now)
    .run();
  return r.meta.changes === 1;
}

/** Inserts a project unless the slug is taken in its workspace; true when this call created it. */
export async function insertProject(env: Env, orgId: string, workspaceId: string, slug: string, name: string, isDefault = false, id = newId()): Promise<boolean> {
  const now = isoNow();
  const r = await env.DB.prepare(
    `INSERT INTO projects (id, org_id, workspace_id, slug, name, is_default, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (workspace_id, slug) DO NOTHING`,
  )
    .bind(id, orgId, workspaceId, slug, name, isDefault ? 1 : 0, now, now)
    .run();
  return r.meta.changes === 1;
}

/** The workspace with this slug, created with `name` when missing; concurrent callers all get the same row. */
export async function getOrCreateWorkspace(env: Env, orgId: string, slug: string, name: string): Promise<WorkspaceRow> {
  await insertWorkspace(env, orgId, slug, name);
  const row = await findWorkspaceBySlug(env, orgId, slug);
  if (!row) throw new Error(`workspace ${slug} vanished right after it was created`);
  return row;
}

export async function getOrCreateProject(env: Env, orgId: string, workspaceId: string, slug: string, name: string): Promise<ProjectRow> {
  await insertProject(env, orgId, workspaceId, slug, name);
  const row = await findProjectBySlug(env, workspaceId, slug);
  if (!row) throw new Error(`project ${slug} vanished right after it was created`);
  return row;
}

/**
 * The org's default workspace, created on first need. Should a non-default
 * workspace already hold the slug `default`, it becomes the default rather
 * than failing the request.
 */
export async function ensureDefaultWorkspace(env: Env, orgId: string): Promise<WorkspaceRow> {
  const select = () =>
    env.DB.prepare(`SELECT * FROM workspaces WHERE org_id = ? AND (is_default = 1 OR slug = ?) ORDER BY is_default DESC LIMIT 1`)
      .bind(orgId, DEFAULT_SLUG)
      .first<WorkspaceRow>();
  let row = await select();
  if (!row) {
    await insertWorkspace(env, orgId, DEFAULT_SLUG, DEFAULT_NAME, true);
    row = await select();
  }
  if (!row) throw new Error(`default workspace of ${orgId} could not be created`);
  if (!row.is_default) {
    await env.DB.prepare('UPDATE workspaces SET is_default = 1 WHERE id = ?').bind(row.id).run();
    row = { ...row, is_default: 1 };
  }
  return row;
}

/** The workspace's default project, created on first need (same rules as the default workspace). */
export async function ensureDefaultProject(env: Env, orgId: string, workspaceId: string): Promise<ProjectRow> {
  const select = () =>
    env.DB.prepare(`SELECT * FROM projects WHERE workspace_id = ? AND (is_default = 1 OR slug = ?) ORDER BY is_default DESC LIMIT 1`)
      .bind(workspaceId, DEFAULT_SLUG)
      .first<ProjectRow>();
  let row = await select();
  if (!row) {
    await insertProject(env, orgId, workspaceId, DEFAULT_SLUG, DEFAULT_NAME, true);
    row = await select();
  }
  if (!row) throw new Error(`default project of workspace ${workspaceId} could not be created`);
  if (!row.is_default) {
    await env.DB.prepare('UPDATE projects SET is_default = 1 WHERE id = ?').bind(row.id).run();
    row = { ...row, is_default: 1 };
  }
  return row;
}
