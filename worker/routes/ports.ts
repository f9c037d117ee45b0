/**
 * Exposed ports (spec/02-computers.txt, Port Exposure): which ports of a
 * computer answer on their preview host `{port}-{slug}.sandbox.{preview_domain}`
 * and who may use them (docs/relay.md). Changes apply to the next request;
 * removing a port, or rotating a protected port's token, also ends the
 * connections already open through it.
 */
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import { PortCreate, PortLink, PortNumber, PortUpdate, type PortVisibility } from '../../schema/api.ts';
import { json } from '../http/responses.ts';
import { isoNow } from '../http/ids.ts';
import { validate } from '../http/body.ts';
import { DecimalInt } from '../../schema/text.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { pagedQuery } from '../http/paged-query.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { computerStub, loadComputer } from '../computers/access.ts';
import { credentialOf } from '../computers/socket-auth.ts';
import { previewOrigin } from '../computers/urls.ts';
import { mintPortToken, readPortToken } from '../preview/port-tokens.ts';
import { AUTH_PATH, mintLinkTicket } from '../preview/preview-credentials.ts';
import type { ComputerRow } from '../../schema/db.ts';
import type { Env } from '../env.ts';

interface PortRow {
  port: number;
  visibility: PortVisibility;
  access_token_ciphertext: string | null;
  access_token_iv: string | null;
  wake: number;
  created_at: string;
  updated_at: string;
}

const COLUMNS = 'port, visibility, access_token_ciphertext, access_token_iv, wake, created_at, updated_at';

/** The record as the tenant sees it; a protected port shows its access token. */
async function view(env: Env, computer: ComputerRow, r: PortRow) {
  const token = r.visibility === 'protected' && r.access_token_ciphertext && r.access_token_iv ? await readPortToken(env, computer.id, r.port, r.access_token_ciphertext, r.access_token_iv) : null;
  return {
    port: r.port,
    visibility: r.visibility,
    url: previewOrigin(computer, r.port, env),
    access_token: token,
    wake_on_request: r.wake === 1,
    created_at: r.created_at,
    updated_at: r.updated_at,
  };
}

/** Hands the port's new record to the computer's object, which serves preview requests from it. */
const tell = (env: Env, computerId: string, r: PortRow | null, port: number, close: string | null = null) =>
  computerStub(env, computerId).portChanged(port, r ? { visibility: r.visibility, token_ciphertext: r.access_token_ciphertext, token_iv: r.access_token_iv, wake: r.wake === 1 } : null, close);

/** The port in the path, as canonical decimal: `0x1F90` or `08080` is not port 8080 but a 400. */
export const portParam = (raw: string) => validate(z.object({ port: DecimalInt.pipe(PortNumber) }), { port: raw }, 'path').port;

async function findPort(c: RouteContext, computerId: string, port: number): Promise<PortRow> {
  const row = await c.env.DB.prepare(`SELECT ${COLUMNS} FROM computer_ports WHERE computer_id = ? AND port = ?`).bind(computerId, port).first<PortRow>();
  if (!row) throw new ApiError('NOT_FOUND', `port ${port} is not exposed`);
  return row;
}

/** The computer's own visibility as a port's: what POST uses when it names none. */
const fromComputer: Record<string, PortVisibility> = { public: 'public', tenant: 'private', key: 'protected' };

/** Token columns for a port becoming `visibility`: a fresh token when it becomes protected, none when it stops being so. */
async function tokenFor(env: Env, computerId: string, port: number, visibility: PortVisibility, current: PortRow | null): Promise<{ ciphertext: string | null; iv: string | null }> {
  if (visibility !== 'protected') return { ciphertext: null, iv: null };
  if (current?.visibility === 'protected' && current.access_token_ciphertext) return { ciphertext: current.access_token_ciphertext, iv: current.access_token_iv };
  const t = await mintPortToken(env, computerId, port);
  return { ciphertext: t.ciphertext, iv: t.iv };
}

export const PORT_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/ports',
    auth: 'tenant',
    handler: async (c) => {
      const computer = await loadComputer(c.env, c.principal, c.params.id);
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<PortRow>(c.env, { columns: COLUMNS, from: 'computer_ports', where: 'computer_id = ?', args: [computer.id], orderBy: 'port' }, page);
      return json({ data: await Promise.all(rows.map((r) => view(c.env, computer, r))), page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/ports',
    auth: 'tenant',
    body: PortCreate,
    handler: async (c) => {
      const computer = await loadComputer(c.env, c.principal, c.params.id);
      const visibility = c.body.visibility ?? fromComputer[computer.visibility] ?? 'public';
      const token = await tokenFor(c.env, computer.id, c.body.port, visibility, null);
      const now = isoNow();
      const row: PortRow = { port: c.body.port, visibility, access_token_ciphertext: token.ciphertext, access_token_iv: token.iv, wake: c.body.wake_on_request ? 1 : 0, created_at: now, updated_at: now };
      const res = await c.env.DB.prepare(
        `INSERT INTO computer_ports (computer_id, ${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (computer_id, port) DO NOTHING`,
      )
        .bind(computer.id, row.port, row.visibility, row.access_token_ciphertext, row.access_token_iv, row.wake, now, now)
        .run();
      if (!res.meta.changes) throw new ApiError('CONFLICT', `port ${c.body.port} is already exposed; use PATCH to change its visibility`);
      await tell(c.env, computer.id, row, row.port);
      return json({ data: await view(c.env, computer, row) }, 201);
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/ports/:port',
    auth: 'tenant',
    handler: async (c) => {
      const computer = await loadComputer(c.env, c.principal, c.params.id);
      return json({ data: await view(c.env, computer, await findPort(c, computer.id, portParam(c.params.port))) });
    },
  }),
  route({
    method: 'PATCH',
    path: '/api/v1/computers/:id/ports/:port',
    auth: 'tenant',
    body: PortUpdate,
    handler: async (c) => {
      const computer = await loadComputer(c.env, c.principal, c.params.id);
      const port = portParam(c.params.port);
      const existing = await findPort(c, computer.id, port);
      const visibility = c.body.visibility ?? existing.visibility;
      const token = await tokenFor(c.env, computer.id, port, visibility, existing);
      const next: PortRow = {
        ...existing,
        visibility,
        access_token_ciphertext: token.ciphertext,
        access_token_iv: token.iv,
        wake: c.body.wake_on_request === undefined ? existing.wake : c.body.wake_on_request ? 1 : 0,
        updated_at: isoNow(),
      };
      await c.env.DB.prepare('UPDATE computer_ports SET visibility = ?, access_token_ciphertext = ?, access_token_iv = ?, wake = ?, updated_at = ? WHERE computer_id = ? AND port = ?')
        .bind(next.visibility, next.access_token_ciphertext, next.access_token_iv, next.wake, next.updated_at, computer.id, port)
        .run();
      await tell(c.env, computer.id, next, port);
      return json({ data: await view(c.env, computer, next) });
    },
  }),
  route({
    method: 'DELETE',
    path: '/api/v1/computers/:id/ports/:port',
    auth: 'tenant',
    handler: async (c) => {
      const computer = await loadComputer(c.env, c.principal, c.params.id);
      const port = portParam(c.params.port);
      await findPort(c, computer.id, port);
      await c.env.DB.prepare('DELETE FROM computer_ports WHERE computer_id = ? AND port = ?').bind(computer.id, port).run();
      await tell(c.env, computer.id, null, port, `port ${port} is no longer exposed`);
      return json({ port, deleted: true });
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/ports/:port/rotate-token',
    auth: 'tenant',
    handler: async (c) => {
      const computer = await loadComputer(c.env, c.principal, c.params.id);
      const port = portParam(c.params.port);
      const existing = await findPort(c, computer.id, port);
      if (existing.visibility !== 'protected') throw new ApiError('CONFLICT', `port ${port} is ${existing.visibility}; only a protected port has an access token`);
      const t = await mintPortToken(c.env, computer.id, port);
      const next: PortRow = { ...existing, access_token_ciphertext: t.ciphertext, access_token_iv: t.iv, updated_at: isoNow() };
      await c.env.DB.prepare('UPDATE computer_ports SET access_token_ciphertext = ?, access_token_iv = ?, updated_at = ? WHERE computer_id = ? AND port = ?')
        .bind(t.ciphertext, t.iv, next.updated_at, computer.id, port)
        .run();
      // What the old token opened is closed with it.
      await tell(c.env, computer.id, next, port, `the access token of port ${port} was rotated`);
      return json({ data: await view(c.env, computer, next) });
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/ports/:port/link',
    auth: 'tenant',
    body: PortLink,
    handler: async (c) => {
      const computer = await loadComputer(c.env, c.principal, c.params.id);
      const port = portParam(c.params.port);
      const row = await findPort(c, computer.id, port);
      const path = c.body.path ?? '/';
      const origin = previewOrigin(computer, port, c.env);
      if (row.visibility === 'private') {
        const { token, exp } = await mintLinkTicket(c.env, { computer_id: computer.id, port, org_id: computer.org_id, credential_id: credentialOf(c.principal) });
        const url = `${origin}${AUTH_PATH}?ticket=${encodeURIComponent(token)}&next=${encodeURIComponent(path)}`;
        return json({ data: { url, expires_at: exp, visibility: row.visibility } });
      }
      // Public ports need nothing; a protected port's link carries its token, which the host then keeps in a cookie.
      const token = (await view(c.env, computer, row)).access_token;
      const url = token ? `${origin}${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : `${origin}${path}`;
      return json({ data: { url, expires_at: null, visibility: row.visibility } });
    },
  }),
];
