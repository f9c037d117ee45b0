/** Per-computer env vars: AES-GCM at rest, injected at boot and into new processes, values never listed back. */
import { ApiError } from '../../schema/errors.ts';
import { ENV_LIMITS, ENV_NAME, EnvCreate, EnvUpdate } from '../../schema/api.ts';
import { json } from '../http/responses.ts';
import { isoNow } from '../http/ids.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { pagedQuery } from '../http/paged-query.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { callerOf, computerStub, loadComputer } from '../computers/access.ts';
import { encryptValue, envAad } from '../crypto/env-cipher.ts';
import type { ComputerRow } from '../../schema/db.ts';

interface EnvRow {
  name: string;
  created_at: string;
  updated_at: string;
}

const view = (r: EnvRow) => ({ name: r.name, created_at: r.created_at, updated_at: r.updated_at });

const utf8Bytes = (s: string) => new TextEncoder().encode(s).byteLength;

/** Bytes of all names and values of computer ?1, in SQL. */
const TOTAL_SQL = '(SELECT COALESCE(SUM(LENGTH(CAST(name AS BLOB)) + value_bytes), 0) FROM computer_env WHERE computer_id = ?1)';

/** The 400 for a variable that would take the computer's set past ENV_LIMITS, saying by how much. */
async function overLimit(c: RouteContext, computerId: string, adding: number, addingVars: number, replacing?: string): Promise<ApiError> {
  const now = await c.env.DB.prepare(
    `SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(CAST(name AS BLOB)) + value_bytes), 0) AS total,
            COALESCE(SUM(CASE WHEN name = ?2 THEN value_bytes ELSE 0 END), 0) AS replaced
       FROM computer_env WHERE computer_id = ?1`,
  )
    .bind(computerId, replacing ?? null)
    .first<{ n: number; total: number; replaced: number }>();
  const n = (now?.n ?? 0) + addingVars;
  if (n > ENV_LIMITS.count) return new ApiError('VALIDATION_FAILED', `env: a computer has at most ${ENV_LIMITS.count} variables; delete one first`);
  const total = (now?.total ?? 0) - (now?.replaced ?? 0) + adding;
  return new ApiError(
    'VALIDATION_FAILED',
    `env: this computer's variables would take ${total} bytes (names and values); at most ${ENV_LIMITS.total_bytes} are allowed per computer`,
  );
}

function envName(raw: string): string {
  if (!ENV_NAME.test(raw) || raw.length > ENV_LIMITS.name_bytes) throw new ApiError('VALIDATION_FAILED', 'name: must be letters, digits and underscores, not starting with a digit');
  return raw;
}

async function findVar(c: RouteContext, computerId: string, name: string): Promise<EnvRow> {
  const row = await c.env.DB.prepare('SELECT name, created_at, updated_at FROM computer_env WHERE computer_id = ? AND name = ?').bind(computerId, name).first<EnvRow>();
  if (!row) throw new ApiError('NOT_FOUND', `env var ${name} not found`);
  return row;
}

/** A running computer gets the new set for its next processes; a stopped one at its next boot. */
async function propagate(c: RouteContext, row: ComputerRow): Promise<void> {
  const r = await computerStub(c.env, row.id).envChanged(callerOf(c.principal));
  if (!r.ok) console.warn(`env change not delivered to ${row.id} now: ${r.message}; it applies at next boot`);
}

export const ENV_VAR_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/env',
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<EnvRow>(
        c.env,
        { columns: 'name, created_at, updated_at', from: 'computer_env', where: 'computer_id = ?', args: [row.id], orderBy: 'name' },
        page,
      );
      return json({ data: rows.map(view), page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/env',
    auth: 'tenant',
    body: EnvCreate,
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const { ciphertext, iv } = await encryptValue(c.env.ENV_ENCRYPTION_KEY, envAad(row.id, c.body.name), c.body.value);
      const now = isoNow();
      const bytes = utf8Bytes(c.body.value);
      // Stored only if the computer's set stays within the limits, checked in the same statement.
      const res = await c.env.DB.prepare(
        `INSERT INTO computer_env (computer_id, name, ciphertext, iv, value_bytes, created_at, updated_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?6
          WHERE (SELECT COUNT(*) FROM computer_env WHERE computer_id = ?1) < ?7
            AND ${TOTAL_SQL} + LENGTH(?2) + ?5 <= ?8
         ON CONFLICT (computer_id, name) DO NOTHING`,
      )
        .bind(row.id, c.body.name, ciphertext, iv, bytes, now, ENV_LIMITS.count, ENV_LIMITS.total_bytes)
        .run();
      if (!res.meta.changes) {
        const exists = await c.env.DB.prepare('SELECT 1 AS x FROM computer_env WHERE computer_id = ? AND name = ?').bind(row.id, c.body.name).first();
        if (exists) throw new ApiError('CONFLICT', `env var ${c.body.name} already exists; use PATCH to change it`);
        throw await overLimit(c, row.id, utf8Bytes(c.body.name) + bytes, 1);
      }
      await propagate(c, row);
      return json({ data: view({ name: c.body.name, created_at: now, updated_at: now }) }, 201);
    },
  }),
  route({
    method: 'PATCH',
    path: '/api/v1/computers/:id/env/:name',
    auth: 'tenant',
    body: EnvUpdate,
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const name = envName(c.params.name);
      const existing = await findVar(c, row.id, name);
      const { ciphertext, iv } = await encryptValue(c.env.ENV_ENCRYPTION_KEY, envAad(row.id, name), c.body.value);
      const now = isoNow();
      const bytes = utf8Bytes(c.body.value);
      const res = await c.env.DB.prepare(
        `UPDATE computer_env SET ciphertext = ?3, iv = ?4, value_bytes = ?5, updated_at = ?6
          WHERE computer_id = ?1 AND name = ?2 AND ${TOTAL_SQL} - value_bytes + ?5 <= ?7`,
      )
        .bind(row.id, name, ciphertext, iv, bytes, now, ENV_LIMITS.total_bytes)
        .run();
      if (!res.meta.changes) {
        await findVar(c, row.id, name);
        throw await overLimit(c, row.id, bytes, 0, name);
      }
      await propagate(c, row);
      return json({ data: view({ ...existing, updated_at: now }) });
    },
  }),
  route({
    method: 'DELETE',
    path: '/api/v1/computers/:id/env/:name',
    auth: 'tenant',
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const name = envName(c.params.name);
      await findVar(c, row.id, name);
      await c.env.DB.prepare('DELETE FROM computer_env WHERE computer_id = ? AND name = ?').bind(row.id, name).run();
      await propagate(c, row);
      return json({ name, deleted: true });
    },
  }),
];
