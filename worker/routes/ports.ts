/** Port exposure records: which ports of a computer are reachable and how (the traffic relay serves them later). */
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import { PortCreate, PortNumber, PortUpdate } from '../../schema/api.ts';
import { json } from '../http/responses.ts';
import { isoNow } from '../http/ids.ts';
import { validate } from '../http/body.ts';
import { DecimalInt } from '../../schema/text.ts';
import { pageInfo, readPage } from '../http/pagination.ts';
import { pagedQuery } from '../http/paged-query.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { loadComputer } from '../computers/access.ts';
import { hostLabel } from '../computers/view.ts';
import type { ComputerRow } from '../../schema/db.ts';

interface PortRow {
  port: number;
  visibility: 'public' | 'private' | 'protected';
  created_at: string;
  updated_at: string;
}

const view = (c: RouteContext, computer: ComputerRow, r: PortRow) => ({
  port: r.port,
  visibility: r.visibility,
  url: `https://${r.port}-${hostLabel(computer)}.${c.env.COMPUTER_DOMAIN}`,
  created_at: r.created_at,
  updated_at: r.updated_at,
});

/** The port in the path, as canonical decimal: `0x1F90` or `08080` is not port 8080 but a 400. */
const portParam = (raw: string) => validate(z.object({ port: DecimalInt.pipe(PortNumber) }), { port: raw }, 'path').port;

async function findPort(c: RouteContext, computerId: string, port: number): Promise<PortRow> {
  const row = await c.env.DB.prepare('SELECT port, visibility, created_at, updated_at FROM computer_ports WHERE computer_id = ? AND port = ?')
    .bind(computerId, port)
    .first<PortRow>();
  if (!row) throw new ApiError('NOT_FOUND', `port ${port} is not exposed`);
  return row;
}

export const PORT_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/ports',
    auth: 'tenant',
    handler: async (c) => {
      const computer = await loadComputer(c.env, c.principal, c.params.id);
      const page = readPage(c.query);
      const { rows, total } = await pagedQuery<PortRow>(
        c.env,
        { columns: 'port, visibility, created_at, updated_at', from: 'computer_ports', where: 'computer_id = ?', args: [computer.id], orderBy: 'port' },
        page,
      );
      return json({ data: rows.map((r) => view(c, computer, r)), page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/ports',
    auth: 'tenant',
    body: PortCreate,
    handler: async (c) => {
      const computer = await loadComputer(c.env, c.principal, c.params.id);
      const now = isoNow();
      const res = await c.env.DB.prepare(
        'INSERT INTO computer_ports (computer_id, port, visibility, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (computer_id, port) DO NOTHING',
      )
        .bind(computer.id, c.body.port, c.body.visibility, now, now)
        .run();
      if (!res.meta.changes) throw new ApiError('CONFLICT', `port ${c.body.port} is already exposed; use PATCH to change its visibility`);
      return json({ data: view(c, computer, { port: c.body.port, visibility: c.body.visibility, created_at: now, updated_at: now }) }, 201);
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
      const now = isoNow();
      await c.env.DB.prepare('UPDATE computer_ports SET visibility = ?, updated_at = ? WHERE computer_id = ? AND port = ?')
        .bind(c.body.visibility, now, computer.id, port)
        .run();
      return json({ data: view(c, computer, { ...existing, visibility: c.body.visibility, updated_at: now }) });
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
      return json({ port, deleted: true });
    },
  }),
];
