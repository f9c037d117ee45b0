/**
 * OpenComputers secrets (spec/05, Secrets): tenant-wide ones every host of
 * the organization gets, and a host's own (which win a clash of names).
 * Names are environment-variable names, unique per scope (409 on a
 * duplicate); values are AES-GCM at rest and never returned by any route.
 * A change reaches the connected agents at once (secrets.set), and every
 * job started after it has the new value in its environment.
 */
import { CreateSecret, SECRET_BYTES_PER_SCOPE, SECRETS_PER_SCOPE, UpdateSecret } from '../../../schema/api-opencomputers.ts';
import { ApiError } from '../../../schema/errors.ts';
import { sealSecret } from '../../crypto/host-secrets.ts';
import type { Env } from '../../env.ts';
import { isoNow, looksLikeId, newId } from '../../http/ids.ts';
import { pagedQuery } from '../../http/paged-query.ts';
import { pageInfo, readPage } from '../../http/pagination.ts';
import { json } from '../../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { hostStub, loadTenantHost, single } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

interface SecretRow {
  id: string;
  org_id: string;
  host_id: string | null;
  name: string;
  description: string | null;
  created_at: string;
  updated_at: string;
}

const COLUMNS = 'id, org_id, host_id, name, description, created_at, updated_at';

const secretView = (s: SecretRow) => ({
  id: s.id,
  name: s.name,
  description: s.description,
  host_id: s.host_id,
  tenant_id: s.org_id,
  created_at: s.created_at,
  updated_at: s.updated_at,
});

/** The scope a request is about: the tenant's own secrets, or one host's. */
interface Scope {
  org_id: string;
  host_id: string | null;
}

async function scopeOf(c: RouteContext): Promise<Scope> {
  if (c.params.id === undefined) return { org_id: c.principal.org_id, host_id: null };
  const host = await loadTenantHost(c.env, c.principal, c.params.id);
  return { org_id: host.org_id, host_id: host.id };
}

const scopeSql = (s: Scope) => (s.host_id === null ? { where: 'org_id = ? AND host_id IS NULL', args: [s.org_id] } : { where: 'org_id = ? AND host_id = ?', args: [s.org_id, s.host_id] });

async function findSecret(env: Env, scope: Scope, rawId: string): Promise<SecretRow> {
  if (!looksLikeId(rawId)) throw new ApiError('INVALID_ID', 'invalid secret id');
  const q = scopeSql(scope);
  const row = await env.DB.prepare(`SELECT ${COLUMNS} FROM oc_secrets WHERE id = ? AND ${q.where}`).bind(rawId.toLowerCase(), ...q.args).first<SecretRow>();
  if (!row) throw new ApiError('NOT_FOUND', 'secret not found');
  return row;
}

const utf8Length = (s: string) => new TextEncoder().encode(s).byteLength;

/** Keeps a scope within its count and bytes (the set goes to agents in one message); `replacing` is a secret whose value is being changed. */
async function checkRoom(env: Env, scope: Scope, adding: { bytes: number; replacing?: string }): Promise<void> {
  const q = scopeSql(scope);
  const row = await env.DB.prepare(`SELECT COUNT(*) AS n, COALESCE(SUM(value_bytes), 0) AS bytes FROM oc_secrets WHERE ${q.where} AND id != ?`)
    .bind(...q.args, adding.replacing ?? '')
    .first<{ n: number; bytes: number }>();
  const where = scope.host_id === null ? 'this tenant' : 'this host';
  if (!adding.replacing && (row?.n ?? 0) >= SECRETS_PER_SCOPE) throw new ApiError('CONFLICT', `${where} has ${SECRETS_PER_SCOPE} secrets, the most it may have`);
  if ((row?.bytes ?? 0) + adding.bytes > SECRET_BYTES_PER_SCOPE) {
    throw new ApiError('PAYLOAD_TOO_LARGE', `the values of ${where}'s secrets may take at most ${SECRET_BYTES_PER_SCOPE} bytes together`);
  }
}

const duplicate = (name: string, scope: Scope) =>
  new ApiError('CONFLICT', `a secret named ${name} already exists ${scope.host_id === null ? 'for this tenant' : 'on this host'}`);

/** Tells the hosts a change concerns (one host, or every host of the tenant) so their agents get the new set now. */
async function propagate(env: Env, scope: Scope, change: { action: 'created' | 'updated' | 'deleted'; name: string; secret_id: string }): Promise<void> {
  const hosts =
    scope.host_id !== null
      ? [scope.host_id]
      : (await env.DB.prepare(`SELECT id FROM hosts WHERE org_id = ? AND kind = 'byo' AND status != 'revoked'`).bind(scope.org_id).all<{ id: string }>()).results.map((h) => h.id);
  const full = { ...change, scope: scope.host_id === null ? ('tenant' as const) : ('host' as const) };
  const results = await Promise.allSettled(hosts.map((id) => hostStub(env, id).secretsChanged({ id, org_id: scope.org_id }, full)));
  // A host that could not be told now loads the secrets afresh when its agent next connects.
  for (const r of results) if (r.status === 'rejected') console.warn(`secret change not delivered to a host now: ${String(r.reason)}`);
}

function routesFor(base: string): RouteDef[] {
  return [
    route({
      method: 'GET',
      path: base,
      auth: 'tenant',
      handler: async (c) => {
        const scope = await scopeOf(c);
        const page = readPage(c.query);
        const q = scopeSql(scope);
        const { rows, total } = await pagedQuery<SecretRow>(c.env, { columns: COLUMNS, from: 'oc_secrets', where: q.where, args: q.args, orderBy: 'name, rowid' }, page);
        return json({ data: rows.map(secretView), meta: { total, page: page.page, per_page: page.page_size }, page: pageInfo(page, total) });
      },
    }),
    route({
      method: 'POST',
      path: base,
      auth: 'tenant',
      body: CreateSecret,
      handler: async (c) => {
        const scope = await scopeOf(c);
        const q = scopeSql(scope);
        if (await c.env.DB.prepare(`SELECT 1 AS x FROM oc_secrets WHERE name = ? AND ${q.where}`).bind(c.body.name, ...q.args).first()) throw duplicate(c.body.name, scope);
        const bytes = utf8Length(c.body.value);
        await checkRoom(c.env, scope, { bytes });
        const id = newId();
        const now = isoNow();
        const sealed = await sealSecret(c.env.ENV_ENCRYPTION_KEY, id, c.body.value);
        try {
          await c.env.DB.prepare(
            'INSERT INTO oc_secrets (id, org_id, host_id, name, description, ciphertext, iv, value_bytes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
          )
            .bind(id, scope.org_id, scope.host_id, c.body.name, c.body.description ?? null, sealed.ciphertext, sealed.iv, bytes, now, now)
            .run();
        } catch (err) {
          // Another request made the same name in between.
          if (/UNIQUE/i.test(String(err))) throw duplicate(c.body.name, scope);
          throw err;
        }
        await propagate(c.env, scope, { action: 'created', name: c.body.name, secret_id: id });
        return json(single(secretView(await findSecret(c.env, scope, id))), 201);
      },
    }),
    route({
      method: 'GET',
      path: `${base}/:secret_id`,
      auth: 'tenant',
      handler: async (c) => json(single(secretView(await findSecret(c.env, await scopeOf(c), c.params.secret_id)))),
    }),
    route({
      method: 'PATCH',
      path: `${base}/:secret_id`,
      auth: 'tenant',
      body: UpdateSecret,
      handler: async (c) => {
        const scope = await scopeOf(c);
        const row = await findSecret(c.env, scope, c.params.secret_id);
        const now = isoNow();
        if (c.body.value !== undefined) {
          const bytes = utf8Length(c.body.value);
          await checkRoom(c.env, scope, { bytes, replacing: row.id });
          const sealed = await sealSecret(c.env.ENV_ENCRYPTION_KEY, row.id, c.body.value);
          await c.env.DB.prepare('UPDATE oc_secrets SET ciphertext = ?, iv = ?, value_bytes = ?, updated_at = ? WHERE id = ?').bind(sealed.ciphertext, sealed.iv, bytes, now, row.id).run();
        }
        if (c.body.description !== undefined) {
          await c.env.DB.prepare('UPDATE oc_secrets SET description = ?, updated_at = ? WHERE id = ?').bind(c.body.description, now, row.id).run();
        }
        if (c.body.value !== undefined) await propagate(c.env, scope, { action: 'updated', name: row.name, secret_id: row.id });
        return json(single(secretView(await findSecret(c.env, scope, row.id))));
      },
    }),
    route({
      method: 'DELETE',
      path: `${base}/:secret_id`,
      auth: 'tenant',
      handler: async (c) => {
        const scope = await scopeOf(c);
        const row = await findSecret(c.env, scope, c.params.secret_id);
        await c.env.DB.prepare('DELETE FROM oc_secrets WHERE id = ?').bind(row.id).run();
        await propagate(c.env, scope, { action: 'deleted', name: row.name, secret_id: row.id });
        return new Response(null, { status: 204 });
      },
    }),
  ];
}

export const SECRET_ROUTES: RouteDef[] = [...routesFor(`${OC_BASE}/secrets`), ...routesFor(`${OC_BASE}/hosts/:id/secrets`)];
