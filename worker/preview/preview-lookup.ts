/**
 * What a preview request needs to know, in one D1 read: the computer the
 * slug names, its record of the port (null when not exposed), and whether the
 * API key behind a presented cookie is still live.
 */
import type { Env } from '../env.ts';

export interface PreviewRecord {
  id: string;
  org_id: string;
  workspace_id: string;
  project_id: string;
  name: string;
  slug: string;
  status: string;
  port: {
    visibility: 'public' | 'private' | 'protected';
    token_ciphertext: string | null;
    token_iv: string | null;
    wake: boolean;
  } | null;
  /** Null when no key was asked about. */
  key_live: boolean | null;
}

interface Row {
  id: string;
  org_id: string;
  workspace_id: string;
  project_id: string;
  name: string;
  slug: string;
  status: string;
  visibility: 'public' | 'private' | 'protected' | null;
  access_token_ciphertext: string | null;
  access_token_iv: string | null;
  wake: number | null;
  key_live: number | null;
}

export async function lookupPreview(env: Env, slug: string, port: number, keyId: string | null): Promise<PreviewRecord | null> {
  const row = await env.DB.prepare(
    `SELECT c.id, c.org_id, c.workspace_id, c.project_id, c.name, c.slug, c.status,
            p.visibility, p.access_token_ciphertext, p.access_token_iv, p.wake,
            CASE WHEN ?3 IS NULL THEN NULL ELSE (SELECT COUNT(*) FROM api_keys k WHERE k.id = ?3 AND k.revoked_at IS NULL AND k.org_id = c.org_id) END AS key_live
       FROM computers c LEFT JOIN computer_ports p ON p.computer_id = c.id AND p.port = ?2
      WHERE c.slug = ?1`,
  )
    .bind(slug, port, keyId)
    .first<Row>();
  if (!row) return null;
  return {
    id: row.id,
    org_id: row.org_id,
    workspace_id: row.workspace_id,
    project_id: row.project_id,
    name: row.name,
    slug: row.slug,
    status: row.status,
    port: row.visibility ? { visibility: row.visibility, token_ciphertext: row.access_token_ciphertext, token_iv: row.access_token_iv, wake: row.wake === 1 } : null,
    key_live: row.key_live === null ? null : row.key_live > 0,
  };
}
