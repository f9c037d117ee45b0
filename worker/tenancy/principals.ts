/** Turning a verified credential (API key or JWT claims) into the Principal every tenant route sees. */
import { waitUntil } from 'cloudflare:workers';
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { isoNow, sha256Hex } from '../http/ids.ts';
import type { Principal } from '../middleware/principal.ts';
import type { TenantClaims } from './jwt.ts';

/** last_used_at is a hint for people, so it is written at most this often per key. */
const LAST_USED_RESOLUTION_MS = 60_000;

const IdList = z.array(z.string()).min(1).nullable();

/** Reads a JSON id-list column; NULL (or an empty list written by hand) means unrestricted. */
export function parseIdList(raw: string | null): string[] | null {
  if (raw === null) return null;
  const r = IdList.safeParse(JSON.parse(raw));
  if (!r.success) throw new Error(`corrupt id list in api_keys: ${raw.slice(0, 64)}`);
  return r.data;
}

/** The workspace whose bucket the general rate limit counts: the only one in scope, else the org's default. */
function rateScope(orgId: string, workspaceIds: string[] | null, defaultWorkspaceId: string | null): string {
  if (workspaceIds?.length === 1) return workspaceIds[0];
  return defaultWorkspaceId ?? `org-${orgId}`;
}

interface KeyRow {
  id: string;
  org_id: string;
  mode: 'live' | 'test';
  workspace_ids: string | null;
  project_ids: string | null;
  last_used_at: string | null;
  rate_limit_per_minute: number | null;
  default_workspace_id: string | null;
}

/**
 * API keys recently seen by this isolate, by hash. Every API request carries
 * a key, and a D1 read on each one is a large share of a fast exec's time, so a
 * found key is trusted for KEY_CACHE_MS. Revoking a key drops it from the
 * isolate that served the revoke at once; other isolates notice within that
 * time, which is the documented delay for revocation (and for an
 * organization's new rate limit).
 */
export const KEY_CACHE_MS = 10_000;
const KEY_CACHE_MAX = 10_000;
const keyCache = new Map<string, { row: KeyRow; at: number }>();

/** Drops a key from this isolate's caches (after revoking it). */
export function forgetCachedKey(keyId: string): void {
  for (const [hash, e] of keyCache) if (e.row.id === keyId) keyCache.delete(hash);
  liveCache.delete(keyId);
}

/** Whether API keys (by id) were live when this isolate last looked; same lifetime as keyCache. */
const liveCache = new Map<string, { live: boolean; at: number }>();

/**
 * True while the API key with this id exists and is not revoked. Credentials
 * minted from a key (stream tokens, tenant JWTs) ask this before they are
 * honoured. `fresh` skips the isolate cache: Durable Objects use it when they
 * accept a long-lived connection, so none is let in after a revocation.
 */
export async function apiKeyLive(env: Env, keyId: string, opts: { fresh?: boolean } = {}): Promise<boolean> {
  const now = Date.now();
  const hit = liveCache.get(keyId);
  if (!opts.fresh && hit && now - hit.at < KEY_CACHE_MS) return hit.live;
  const row = await env.DB.prepare('SELECT revoked_at FROM api_keys WHERE id = ?').bind(keyId).first<{ revoked_at: string | null }>();
  const live = row !== null && row.revoked_at === null;
  if (liveCache.size >= KEY_CACHE_MAX) liveCache.delete(liveCache.keys().next().value!);
  liveCache.set(keyId, { live, at: now });
  return live;
}

/** Drops every cached key of an organization (after its limits change). */
export function forgetCachedOrg(orgId: string): void {
  for (const [hash, e] of keyCache) if (e.row.org_id === orgId) keyCache.delete(hash);
}

/** Looks up a live (not revoked) API key by its hash; null when there is none. */
export async function findApiKey(env: Env, key: string): Promise<KeyRow | null> {
  const hash = await sha256Hex(key);
  const now = Date.now();
  const hit = keyCache.get(hash);
  if (hit && now - hit.at < KEY_CACHE_MS) return hit.row;
  const row = await readApiKey(env, hash);
  keyCache.delete(hash);
  if (row) {
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value!);
    keyCache.set(hash, { row, at: now });
  }
  return row;
}

async function readApiKey(env: Env, hash: string): Promise<KeyRow | null> {
  return env.DB.prepare(
    `SELECT k.id, k.org_id, k.mode, k.workspace_ids, k.project_ids, k.last_used_at, o.rate_limit_per_minute,
            (SELECT w.id FROM workspaces w WHERE w.org_id = k.org_id AND w.is_default = 1 LIMIT 1) AS default_workspace_id
       FROM api_keys k JOIN organizations o ON o.id = k.org_id
      WHERE k.key_hash = ? AND k.revoked_at IS NULL`,
  )
    .bind(hash)
    .first<KeyRow>();
}

/** Authenticates an API key; 401 when it is unknown or revoked. */
export async function principalFromApiKey(env: Env, key: string): Promise<Principal> {
  const row = await findApiKey(env, key);
  if (!row) throw new ApiError('UNAUTHORIZED', 'invalid or revoked API key');
  touchLastUsed(env, row);
  const workspaceIds = parseIdList(row.workspace_ids);
  return {
    kind: 'api_key',
    org_id: row.org_id,
    subject: row.id,
    credential_id: row.id,
    workspace_ids: workspaceIds,
    project_ids: parseIdList(row.project_ids),
    mode: row.mode,
    rate_scope: rateScope(row.org_id, workspaceIds, row.default_workspace_id),
    rate_limit: row.rate_limit_per_minute,
  };
}

/**
 * Records use of a key after the response, off the request's critical path
 * (waitUntil), and only when the stored value is over a minute old so a busy
 * key costs one D1 write per minute rather than one per request.
 */
function touchLastUsed(env: Env, row: KeyRow): void {
  const now = Date.now();
  if (row.last_used_at && now - Date.parse(row.last_used_at) < LAST_USED_RESOLUTION_MS) return;
  const stamp = isoNow(now);
  const staleBefore = isoNow(now - LAST_USED_RESOLUTION_MS);
  waitUntil(
    env.DB.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)')
      .bind(stamp, row.id, staleBefore)
      .run()
      .then(
        () => undefined,
        (err: unknown) => console.error('last_used_at update failed', err),
      ),
  );
}

/** Builds the principal of verified JWT claims; 401 when the org is gone or the key it was minted from is revoked. */
export async function principalFromClaims(env: Env, claims: TenantClaims): Promise<Principal> {
  const keyId = claims.key_id ?? null;
  const row = await env.DB.prepare(
    `SELECT o.rate_limit_per_minute,
            (SELECT w.id FROM workspaces w WHERE w.org_id = o.id AND w.is_default = 1 LIMIT 1) AS default_workspace_id,
            CASE WHEN ?1 IS NULL THEN 1
                 ELSE EXISTS (SELECT 1 FROM api_keys k WHERE k.id = ?1 AND k.org_id = o.id AND k.revoked_at IS NULL) END AS key_ok
       FROM organizations o WHERE o.id = ?2`,
  )
    .bind(keyId, claims.org_id)
    .first<{ rate_limit_per_minute: number | null; default_workspace_id: string | null; key_ok: number }>();
  if (!row) throw new ApiError('UNAUTHORIZED', 'invalid token: unknown organization');
  if (!row.key_ok) throw new ApiError('UNAUTHORIZED', 'invalid token: the API key it was issued for is revoked');
  const workspaceIds = claims.workspace_ids ?? null;
  return {
    kind: 'jwt',
    org_id: claims.org_id,
    subject: claims.sub,
    credential_id: keyId,
    workspace_ids: workspaceIds,
    project_ids: claims.project_ids ?? null,
    mode: claims.mode ?? 'live',
    rate_scope: rateScope(claims.org_id, workspaceIds, row.default_workspace_id),
    rate_limit: row.rate_limit_per_minute,
  };
}
