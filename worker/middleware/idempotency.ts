/**
 * Idempotency-Key on mutations, per organization. The first request with a
 * key claims it atomically (a row in idempotency_keys, state 'running'); its
 * outcome is stored and replayed to every retry within 24 h:
 *  - same key, same method + path + body  -> the first status and body, with
 *    `Idempotent-Replayed: true`, without running the handler again;
 *  - same key, another request            -> 422 IDEMPOTENCY_KEY_REUSED;
 *  - same key while the first still runs  -> 409 IDEMPOTENCY_KEY_IN_USE.
 * A 5xx (returned or thrown) releases the key so a retry runs afresh; 4xx
 * outcomes are stored like successes. Streams (SSE, WebSocket) and binary
 * bodies pass through unstored; a retry of one gets 409 rather than a second
 * execution.
 */
import { waitUntil } from 'cloudflare:workers';
import { z } from 'zod';
import { ApiError, ERROR_STATUS, type ErrorCode } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { sha256Hex } from '../http/ids.ts';

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/** A claim older than this whose request never finished (its isolate died) is abandoned and may be taken over. */
export const RUNNING_LEASE_MS = 10 * 60 * 1000;
/** Larger bodies are not kept in D1 (rows are capped near 1 MB); mutation responses are small JSON. */
const MAX_STORED_BODY_CHARS = 256 * 1024;
const KEY_RE = /^[\x20-\x7e]{1,255}$/;
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);
export const REPLAYED_HEADER = 'idempotent-replayed';

interface Claim {
  orgId: string;
  key: string;
  fingerprint: string;
  claimedAt: string;
}

const StoredRow = z.object({
  fingerprint: z.string(),
  state: z.enum(['running', 'done']),
  status: z.number().int().nullable(),
  body: z.string().nullable(),
  content_type: z.string().nullable(),
});
type StoredRow = z.infer<typeof StoredRow>;

/** Runs a mutation under an Idempotency-Key (see the module comment for the rules). */
export async function withIdempotency(env: Env, orgId: string, key: string, fingerprintSource: string, run: () => Promise<Response>): Promise<Response> {
  if (!KEY_RE.test(key)) throw new ApiError('BAD_REQUEST', 'Idempotency-Key must be 1 to 255 printable ASCII characters');
  const fingerprint = await sha256Hex(fingerprintSource);

  // A claim fails only when a live row exists; if that row vanishes before we read it (a 5xx released it), claim again.
  for (let attempt = 0; attempt < 3; attempt++) {
    const claim = await tryClaim(env, orgId, key, fingerprint);
    if (claim) return execute(env, claim, run);
    const row = await readRow(env, orgId, key);
    if (!row) continue;
    if (row.fingerprint !== fingerprint) {
      throw new ApiError('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was already used with a different request (method, path or body); use a new key');
    }
    if (row.state === 'running') {
      throw new ApiError('IDEMPOTENCY_KEY_IN_USE', 'a request with this Idempotency-Key is still in progress; retry after it completes');
    }
    return replay(row);
  }
  throw new ApiError('IDEMPOTENCY_KEY_IN_USE', 'this Idempotency-Key is contended by concurrent requests; retry shortly');
}

/** Inserts a 'running' row, or takes over an expired or abandoned one; null when a live row holds the key. */
async function tryClaim(env: Env, orgId: string, key: string, fingerprint: string): Promise<Claim | null> {
  const now = Date.now();
  const claimedAt = new Date(now).toISOString();
  const expiresAt = new Date(now + IDEMPOTENCY_TTL_MS).toISOString();
  const abandonedBefore = new Date(now - RUNNING_LEASE_MS).toISOString();
  const r = await env.DB.prepare(
    `INSERT INTO idempotency_keys (org_id, key, fingerprint, state, created_at, expires_at)
     VALUES (?1, ?2, ?3, 'running', ?4, ?5)
     ON CONFLICT (org_id, key) DO UPDATE SET
       fingerprint = excluded.fingerprint, state = 'running', status = NULL, body = NULL, content_type = NULL,
       created_at = excluded.created_at, expires_at = excluded.expires_at
     WHERE idempotency_keys.expires_at <= ?4 OR (idempotency_keys.state = 'running' AND idempotency_keys.created_at <= ?6)`,
  )
    .bind(orgId, key, fingerprint, claimedAt, expiresAt, abandonedBefore)
    .run();
  if (r.meta.changes !== 1) return null;
  if (Math.random() < 0.01) pruneExpired(env, orgId, claimedAt);
  return { orgId, key, fingerprint, claimedAt };
}

/** Expired rows are replaced lazily when their key comes back; this occasionally sweeps the ones that never do. */
function pruneExpired(env: Env, orgId: string, now: string): void {
  waitUntil(
    env.DB.prepare('DELETE FROM idempotency_keys WHERE org_id = ? AND expires_at <= ?')
      .bind(orgId, now)
      .run()
      .then(
        () => undefined,
        (err: unknown) => console.error('idempotency prune failed', err),
      ),
  );
}

async function readRow(env: Env, orgId: string, key: string): Promise<StoredRow | null> {
  const raw = await env.DB.prepare(
    'SELECT fingerprint, state, status, body, content_type FROM idempotency_keys WHERE org_id = ? AND key = ? AND expires_at > ?',
  )
    .bind(orgId, key, new Date().toISOString())
    .first();
  return raw ? StoredRow.parse(raw) : null;
}

async function execute(env: Env, claim: Claim, run: () => Promise<Response>): Promise<Response> {
  let res: Response;
  try {
    res = await run();
  } catch (err) {
    if (err instanceof ApiError && err.status < 500) {
      await finish(env, claim, err.status, JSON.stringify({ error: { code: err.code, message: err.message } }), 'application/json; charset=utf-8');
    } else {
      await release(env, claim);
    }
    throw err;
  }
  if (res.status >= 500) {
    await release(env, claim);
    return res;
  }
  const contentType = res.headers.get('content-type');
  if (!isReplayable(res, contentType)) {
    await finish(env, claim, res.status, null, contentType);
    return res;
  }
  const text = NULL_BODY_STATUSES.has(res.status) ? '' : await res.text();
  await finish(env, claim, res.status, text.length <= MAX_STORED_BODY_CHARS ? text : null, contentType);
  return new Response(NULL_BODY_STATUSES.has(res.status) ? null : text, { status: res.status, statusText: res.statusText, headers: res.headers });
}

/** Text and JSON bodies are stored; streams and binary bodies are passed through untouched. */
function isReplayable(res: Response, contentType: string | null): boolean {
  if (res.webSocket || res.status === 101) return false;
  if (!res.body || NULL_BODY_STATUSES.has(res.status)) return true;
  if (!contentType) return false;
  const type = contentType.split(';')[0].trim().toLowerCase();
  if (type === 'text/event-stream') return false;
  return type === 'application/json' || type.endsWith('+json') || type.startsWith('text/');
}

/** Records the outcome. A failed write is logged, not thrown: the mutation already happened and its response must still go out. */
async function finish(env: Env, c: Claim, status: number, body: string | null, contentType: string | null): Promise<void> {
  try {
    await env.DB.prepare(
      `UPDATE idempotency_keys SET state = 'done', status = ?, body = ?, content_type = ?
        WHERE org_id = ? AND key = ? AND created_at = ? AND state = 'running'`,
    )
      .bind(status, body, contentType, c.orgId, c.key, c.claimedAt)
      .run();
  } catch (err) {
    console.error('idempotency: storing the outcome failed', err);
  }
}

/** Frees the key after a server error so the client's retry runs again. */
async function release(env: Env, c: Claim): Promise<void> {
  try {
    await env.DB.prepare(`DELETE FROM idempotency_keys WHERE org_id = ? AND key = ? AND created_at = ? AND state = 'running'`)
      .bind(c.orgId, c.key, c.claimedAt)
      .run();
  } catch (err) {
    console.error('idempotency: releasing the key failed', err);
  }
}

const StoredError = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

function replay(row: StoredRow): Response {
  if (row.status === null) throw new Error('idempotency row in state done without a status');
  if (row.body === null) {
    throw new ApiError('CONFLICT', 'the request with this Idempotency-Key already ran and its response (a stream or a large body) cannot be replayed; use a new key to run it again');
  }
  // Stored errors are thrown again so the envelope carries this request's request_id, like every other error.
  if (row.status >= 400) {
    const parsed = StoredError.safeParse(safeJson(row.body));
    if (parsed.success && parsed.data.error.code in ERROR_STATUS) {
      throw new ApiError(parsed.data.error.code as ErrorCode, parsed.data.error.message, { [REPLAYED_HEADER]: 'true' });
    }
  }
  const headers: Record<string, string> = { [REPLAYED_HEADER]: 'true' };
  if (row.content_type) headers['content-type'] = row.content_type;
  return new Response(NULL_BODY_STATUSES.has(row.status) ? null : row.body, { status: row.status, headers });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
