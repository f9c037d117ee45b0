/**
 * OpenComputers tunnels (spec/05, Tunnels): a port on a tenant's own host
 * reached at `/t/{slug}` on the API host and at `{slug}.t.{PREVIEW_DOMAIN}`
 * (docs/relay.md, Tunnels). The records live in D1; every change is handed
 * to the host's object before the route answers, so the next request through
 * the tunnel already sees it. Disabling or deleting a tunnel, or pointing it
 * at another port, also ends the connections open through it.
 */
import { ApiError } from '../../../schema/errors.ts';
import { TunnelCreate, TunnelLink, TunnelUpdate, type Tunnel, type TunnelRow } from '../../../schema/tunnels.ts';
import type { Env } from '../../env.ts';
import { isoNow, looksLikeId, newId } from '../../http/ids.ts';
import { pagedQuery } from '../../http/paged-query.ts';
import { pageInfo, readPage } from '../../http/pagination.ts';
import { json } from '../../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { credentialOf } from '../../computers/socket-auth.ts';
import { tunnelHostUrl, tunnelPathUrl } from '../../tunnels/tunnel-address.ts';
import { TUNNEL_AUTH_PATH, mintTunnelTicket } from '../../tunnels/tunnel-credentials.ts';
import { forgetTunnelSlug } from '../../tunnels/tunnel-lookup.ts';
import { hashPassword } from '../../tunnels/tunnel-password.ts';
import { tunnelRecordOf } from '../../../durable-objects/relay/tunnel-table.ts';
import { hostStub, loadTenantHost, refOf, single, type TenantHostRow } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

const BASE = `${OC_BASE}/hosts/:id/tunnels`;
/** Tunnels per host: plenty for a machine's services, and a bound on what one host's object serves. */
export const TUNNELS_PER_HOST = 100;

const COLUMNS = 'id, org_id, host_id, slug, target_port, auth_mode, password_hash, enabled, created_at, updated_at';

/** A tunnel as the API shows it: never its password or hash. */
function view(c: RouteContext, t: TunnelRow): Tunnel {
  return {
    id: t.id,
    host_id: t.host_id,
    slug: t.slug,
    target_port: t.target_port,
    auth_mode: t.auth_mode,
    public_url: tunnelPathUrl(c.url.origin, t.slug),
    host_url: tunnelHostUrl(c.env, t.slug),
    enabled: t.enabled === 1,
    created_at: t.created_at,
    updated_at: t.updated_at,
  };
}

async function findTunnel(env: Env, host: TenantHostRow, rawId: string): Promise<TunnelRow> {
  if (!looksLikeId(rawId)) throw new ApiError('INVALID_ID', 'invalid tunnel id');
  const row = await env.DB.prepare(`SELECT ${COLUMNS} FROM tunnels WHERE id = ? AND host_id = ? AND org_id = ?`).bind(rawId.toLowerCase(), host.id, host.org_id).first<TunnelRow>();
  if (!row) throw new ApiError('NOT_FOUND', 'tunnel not found');
  return row;
}

/** Hands the tunnel's record to its host's object, which serves tunnel requests from it. */
const tell = (env: Env, host: TenantHostRow, tunnelId: string, row: TunnelRow | null, close: string | null = null) =>
  hostStub(env, host.id).tunnelChanged(refOf(host), tunnelId, row ? tunnelRecordOf(row) : null, close);

/** A slug nobody has: a word for what it is and 8 random characters. */
function generatedSlug(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `tunnel-${Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('')}`;
}

const slugTaken = (slug: string) => new ApiError('CONFLICT', `the slug ${slug} is taken; choose another (slugs are unique across the deployment)`);

export const TUNNEL_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: BASE,
    auth: 'tenant',
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<TunnelRow>(c.env, { columns: COLUMNS, from: 'tunnels', where: 'host_id = ? AND org_id = ?', args: [host.id, host.org_id], orderBy: 'created_at, rowid' }, page);
      return json({ data: rows.map((r) => view(c, r)), meta: { total, page: page.page, per_page: page.page_size }, page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'POST',
    path: BASE,
    auth: 'tenant',
    body: TunnelCreate,
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      if (host.status === 'revoked') throw new ApiError('CONFLICT', 'the host is revoked; it serves no tunnels');
      const count = await c.env.DB.prepare('SELECT COUNT(*) AS n FROM tunnels WHERE host_id = ?').bind(host.id).first<{ n: number }>();
      if ((count?.n ?? 0) >= TUNNELS_PER_HOST) throw new ApiError('CONFLICT', `this host has ${TUNNELS_PER_HOST} tunnels, the most it may have; delete one first`);
      const now = isoNow();
      const row: TunnelRow = {
        id: newId(),
        org_id: host.org_id,
        host_id: host.id,
        slug: c.body.slug ?? generatedSlug(),
        target_port: c.body.target_port,
        auth_mode: c.body.auth_mode,
        password_hash: c.body.password !== undefined ? await hashPassword(c.body.password) : null,
        enabled: c.body.enabled ? 1 : 0,
        created_at: now,
        updated_at: now,
      };
      const res = await c.env.DB.prepare(`INSERT INTO tunnels (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (slug) DO NOTHING`)
        .bind(row.id, row.org_id, row.host_id, row.slug, row.target_port, row.auth_mode, row.password_hash, row.enabled, row.created_at, row.updated_at)
        .run();
      if (!res.meta.changes) throw slugTaken(row.slug);
      forgetTunnelSlug(row.slug);
      await tell(c.env, host, row.id, row);
      return json(single(view(c, row)), 201);
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:tunnel_id`,
    auth: 'tenant',
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      return json(single(view(c, await findTunnel(c.env, host, c.params.tunnel_id))));
    },
  }),
  route({
    method: 'PATCH',
    path: `${BASE}/:tunnel_id`,
    auth: 'tenant',
    body: TunnelUpdate,
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const row = await findTunnel(c.env, host, c.params.tunnel_id);
      const mode = c.body.auth_mode ?? row.auth_mode;
      if (c.body.password !== undefined && mode !== 'password') throw new ApiError('VALIDATION_FAILED', 'password: a password is only for auth_mode password');
      let hash = mode === 'password' ? row.password_hash : null;
      if (c.body.password !== undefined) hash = await hashPassword(c.body.password);
      if (mode === 'password' && !hash) throw new ApiError('VALIDATION_FAILED', 'password: auth_mode password needs a password');
      const next: TunnelRow = {
        ...row,
        target_port: c.body.target_port ?? row.target_port,
        auth_mode: mode,
        password_hash: hash,
        enabled: c.body.enabled === undefined ? row.enabled : c.body.enabled ? 1 : 0,
        updated_at: isoNow(),
      };
      await c.env.DB.prepare('UPDATE tunnels SET target_port = ?, auth_mode = ?, password_hash = ?, enabled = ?, updated_at = ? WHERE id = ?')
        .bind(next.target_port, next.auth_mode, next.password_hash, next.enabled, next.updated_at, row.id)
        .run();
      // Off, or pointed elsewhere: what is open through it ends. A new auth mode or password applies to the next request.
      const close = next.enabled === 0 && row.enabled === 1 ? `tunnel ${row.slug} was disabled` : next.target_port !== row.target_port ? `tunnel ${row.slug} now goes to another port` : null;
      await tell(c.env, host, row.id, next, close);
      return json(single(view(c, next)));
    },
  }),
  route({
    method: 'DELETE',
    path: `${BASE}/:tunnel_id`,
    auth: 'tenant',
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const row = await findTunnel(c.env, host, c.params.tunnel_id);
      await c.env.DB.prepare('DELETE FROM tunnels WHERE id = ?').bind(row.id).run();
      forgetTunnelSlug(row.slug);
      await tell(c.env, host, row.id, null, `tunnel ${row.slug} was deleted`);
      return new Response(null, { status: 204 });
    },
  }),
  route({
    method: 'POST',
    path: `${BASE}/:tunnel_id/link`,
    auth: 'tenant',
    body: TunnelLink,
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const row = await findTunnel(c.env, host, c.params.tunnel_id);
      const path = c.body.path ?? '/';
      const hostUrl = tunnelHostUrl(c.env, row.slug);
      const pathUrl = tunnelPathUrl(c.url.origin, row.slug);
      if (row.auth_mode !== 'tenant_only') {
        // Public and password tunnels need no link: the plain URLs (a password tunnel asks for its password).
        return json({ data: { url: hostUrl + path, path_url: pathUrl + path, expires_at: null, auth_mode: row.auth_mode } });
      }
      // One ticket per URL: each is good once, on its own host or path.
      const mint = async (base: string) => {
        const t = await mintTunnelTicket(c.env, row.id, credentialOf(c.principal));
        return { url: `${base}${TUNNEL_AUTH_PATH}?ticket=${encodeURIComponent(t.token)}&next=${encodeURIComponent(path)}`, exp: t.exp };
      };
      const [own, under] = await Promise.all([mint(hostUrl), mint(pathUrl)]);
      return json({ data: { url: own.url, path_url: under.url, expires_at: new Date(own.exp * 1000).toISOString(), auth_mode: row.auth_mode } });
    },
  }),
];
