/** Per-computer env vars: AES-GCM at rest, injected at boot and into new processes, values never listed back. */
import { ApiError } from '../../schema/errors.ts';
import { ENV_NAME, EnvCreate, EnvUpdate } from '../../schema/api.ts';
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

function envName(raw: string): string {
  if (!ENV_NAME.test(raw) || raw.length > 256) throw new ApiError('VALIDATION_FAILED', 'name: must be letters, digits and underscores, not starting with a digit');
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
      const res = await c.env.DB.prepare(
        'INSERT INTO computer_env (computer_id, name, ciphertext, iv, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (computer_id, name) DO NOTHING',
      )
        .bind(row.id, c.body.name, ciphertext, iv, now, now)
        .run();
      if (!res.meta.changes) throw new ApiError('CONFLICT', `env var ${c.body.name} already exists; use PATCH to change it`);
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
      await c.env.DB.prepare('UPDATE computer_env SET ciphertext = ?, iv = ?, updated_at = ? WHERE computer_id = ? AND name = ?')
        .bind(ciphertext, iv, now, row.id, name)
        .run();
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
