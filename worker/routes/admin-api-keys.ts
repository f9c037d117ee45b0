/**
 * Operator API: an organization's API keys. The plaintext key is in the
 * create response only; afterwards a key is known by its id and prefix.
 * Revoking keeps the row (for audit) and stops the key, every JWT, stream
 * token and ticket minted from it, and closes the sockets and viewers opened
 * with them, before it answers.
 */
import { CreateApiKey } from '../../schema/api-admin.ts';
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { isoNow, newId } from '../http/ids.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { json } from '../http/responses.ts';
import { route, type RouteDef } from '../router.ts';
import { mintApiKey } from '../tenancy/keys.ts';
import { requireOrganization } from '../tenancy/organizations.ts';
import { pagedQuery } from '../http/paged-query.ts';
import { parseIdList } from '../tenancy/principals.ts';
import { endCredential } from '../credentials/revocation.ts';

const BASE = '/api/v1/admin/organizations/:org_id/api-keys';
const COLUMNS = 'id, org_id, name, key_prefix, mode, workspace_ids, project_ids, created_at, last_used_at, revoked_at';

interface KeyRow {
  id: string;
  org_id: string;
  name: string;
  key_prefix: string;
  mode: 'live' | 'test';
  workspace_ids: string | null;
  project_ids: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const keyView = (k: KeyRow) => ({
  id: k.id,
  org_id: k.org_id,
  name: k.name,
  mode: k.mode,
  key_prefix: k.key_prefix,
  workspace_ids: parseIdList(k.workspace_ids),
  project_ids: parseIdList(k.project_ids),
  status: k.revoked_at ? 'revoked' : 'active',
  created_at: k.created_at,
  last_used_at: k.last_used_at,
  revoked_at: k.revoked_at,
});

async function requireKey(env: Env, orgId: string, keyId: string): Promise<KeyRow> {
  const row = await env.DB.prepare(`SELECT ${COLUMNS} FROM api_keys WHERE id = ? AND org_id = ?`).bind(keyId, orgId).first<KeyRow>();
  if (!row) throw new ApiError('NOT_FOUND', `API key ${keyId} not found in organization ${orgId}`);
  return row;
}

/** Every id in a key's scope must name a workspace/project of that org (and, with both lists, one inside those workspaces). */
async function checkScope(env: Env, orgId: string, workspaceIds: string[] | null, projectIds: string[] | null): Promise<void> {
  if (workspaceIds) {
    const { results } = await env.DB.prepare(`SELECT id FROM workspaces WHERE org_id = ? AND id IN (${workspaceIds.map(() => '?').join(', ')})`)
      .bind(orgId, ...workspaceIds)
      .all<{ id: string }>();
    const found = new Set(results.map((r) => r.id));
    const missing = workspaceIds.find((id) => !found.has(id));
    if (missing) throw new ApiError('VALIDATION_FAILED', `workspace_ids: workspace ${missing} is not in organization ${orgId}`);
  }
  if (projectIds) {
    const { results } = await env.DB.prepare(`SELECT id, workspace_id FROM projects WHERE org_id = ? AND id IN (${projectIds.map(() => '?').join(', ')})`)
      .bind(orgId, ...projectIds)
      .all<{ id: string; workspace_id: string }>();
    const byId = new Map(results.map((r) => [r.id, r.workspace_id]));
    for (const id of projectIds) {
      const ws = byId.get(id);
      if (!ws) throw new ApiError('VALIDATION_FAILED', `project_ids: project ${id} is not in organization ${orgId}`);
      if (workspaceIds && !workspaceIds.includes(ws)) throw new ApiError('VALIDATION_FAILED', `project_ids: project ${id} is outside the key's workspace_ids`);
    }
  }
}

export const ADMIN_API_KEY_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: BASE,
    auth: 'operator',
    body: CreateApiKey,
    handler: async (c) => {
      const org = await requireOrganization(c.env, c.params.org_id);
      const b = c.body;
      const workspaceIds = b.workspace_ids ? [...new Set(b.workspace_ids)] : null;
      const projectIds = b.project_ids ? [...new Set(b.project_ids)] : null;
      await checkScope(c.env, org.id, workspaceIds, projectIds);
      const minted = await mintApiKey(b.mode);
      const id = newId();
      await c.env.DB.prepare(
        `INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix, mode, workspace_ids, project_ids, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
        .bind(id, org.id, b.name, minted.hash, minted.prefix, b.mode, workspaceIds && JSON.stringify(workspaceIds), projectIds && JSON.stringify(projectIds), isoNow())
        .run();
      // The only time the secret leaves the server.
      return json({ data: { ...keyView(await requireKey(c.env, org.id, id)), key: minted.key } }, 201);
    },
  }),
  route({
    method: 'GET',
    path: BASE,
    auth: 'operator',
    handler: async (c) => {
      const org = await requireOrganization(c.env, c.params.org_id);
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<KeyRow>(c.env, { columns: COLUMNS, from: 'api_keys', where: 'org_id = ?', args: [org.id], orderBy: 'created_at, rowid' }, page);
      return json({ data: rows.map(keyView), page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:key_id`,
    auth: 'operator',
    handler: async (c) => json({ data: keyView(await requireKey(c.env, c.params.org_id, c.params.key_id)) }),
  }),
  route({
    method: 'DELETE',
    path: `${BASE}/:key_id`,
    auth: 'operator',
    handler: async (c) => {
      const key = await requireKey(c.env, c.params.org_id, c.params.key_id);
      // Revoking twice keeps the first revocation time.
      await c.env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').bind(isoNow(), key.id).run();
      // Sockets, viewers and tickets opened with the key close before the answer.
      await endCredential(c.env, key.org_id, key.id);
      return json({ data: keyView(await requireKey(c.env, key.org_id, key.id)) });
    },
  }),
];
