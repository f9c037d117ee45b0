/** Organizations as the operator manages them: creation with their default workspace and project, reads, the API view. */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { isoNow, newId, slugify } from '../http/ids.ts';
import { DEFAULT_SLUG } from './workspaces.ts';

export interface OrganizationRow {
  id: string;
  name: string;
  slug: string;
  credits: number;
  rate_limit_per_minute: number | null;
  created_at: string;
  updated_at: string;
  default_workspace_id: string | null;
  default_project_id: string | null;
}

/** Columns of an organization plus its default workspace and project, for `FROM organizations o`. */
export const ORG_COLUMNS = `o.id, o.name, o.slug, o.credits, o.rate_limit_per_minute, o.created_at, o.updated_at,
  (SELECT w.id FROM workspaces w WHERE w.org_id = o.id AND w.is_default = 1 LIMIT 1) AS default_workspace_id,
  (SELECT p.id FROM projects p JOIN workspaces w ON w.id = p.workspace_id
    WHERE w.org_id = o.id AND w.is_default = 1 AND p.is_default = 1 LIMIT 1) AS default_project_id`;

export const getOrganization = (env: Env, id: string) =>
  env.DB.prepare(`SELECT ${ORG_COLUMNS} FROM organizations o WHERE o.id = ?`).bind(id).first<OrganizationRow>();

/** The organization or a 404 naming it. */
export async function requireOrganization(env: Env, id: string): Promise<OrganizationRow> {
  const org = await getOrganization(env, id);
  if (!org) throw new ApiError('NOT_FOUND', `organization ${id} not found`);
  return org;
}

export interface NewOrganization {
  name: string;
  slug?: string;
  credits: number;
  rate_limit_per_minute?: number | null;
}

/**
 * Creates an organization, its default workspace and project, and (for a
 * non-zero opening balance) the credit transaction that explains it, all in
 * one D1 batch so a half-made tenant never exists. 409 when the slug is taken.
 */
export async function createOrganization(env: Env, n: NewOrganization): Promise<OrganizationRow> {
  const id = newId();
  const workspaceId = newId();
  const now = isoNow();
  const slug = n.slug ?? `${slugify(n.name)}-${id.slice(0, 8)}`;
  const stmts = [
    env.DB.prepare('INSERT INTO organizations (id, name, slug, credits, rate_limit_per_minute, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)').bind(
      id,
      n.name,
      slug,
      n.credits,
      n.rate_limit_per_minute ?? null,
      now,
      now,
    ),
    env.DB.prepare('INSERT INTO workspaces (id, org_id, slug, name, is_default, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)').bind(
      workspaceId,
      id,
      DEFAULT_SLUG,
      'Default',
      now,
      now,
    ),
    env.DB.prepare('INSERT INTO projects (id, org_id, workspace_id, slug, name, is_default, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)').bind(
      newId(),
      id,
      workspaceId,
      DEFAULT_SLUG,
      'Default',
      now,
      now,
    ),
  ];
  if (n.credits !== 0) {
    stmts.push(
      env.DB.prepare('INSERT INTO credit_transactions (id, org_id, amount, reason, computer_id, created_at) VALUES (?, ?, ?, ?, NULL, ?)').bind(
        newId(),
        id,
        n.credits,
        'initial credits',
        now,
      ),
    );
  }
  try {
    await env.DB.batch(stmts);
  } catch (err) {
    if (/UNIQUE constraint failed: organizations\.slug/.test(String(err))) {
      throw new ApiError('CONFLICT', `an organization with slug ${slug} already exists`);
    }
    throw err;
  }
  return requireOrganization(env, id);
}

/** The organization as the admin API shows it. */
export const organizationView = (o: OrganizationRow) => ({
  id: o.id,
  name: o.name,
  slug: o.slug,
  credits: o.credits,
  rate_limit_per_minute: o.rate_limit_per_minute,
  default_workspace_id: o.default_workspace_id,
  default_project_id: o.default_project_id,
  created_at: o.created_at,
  updated_at: o.updated_at,
});
