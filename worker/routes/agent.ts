/**
 * Where host agents dial in: the host socket (HostObject) and one socket per
 * computer (ComputerObject). Both are WebSocket upgrades authenticated with the
 * host key; the verified host id travels to the object in a header.
 */
import { ApiError } from '../../schema/errors.ts';
import { AGENT_HOST_PATH, AGENT_WHOAMI_PATH, type WhoAmI } from '../../schema/protocol.ts';
import { authenticateHost, type HostIdentity } from '../middleware/host-key.ts';
import { json } from '../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';

function requireUpgrade(c: RouteContext): void {
  if (c.request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
    throw new ApiError('BAD_REQUEST', 'this endpoint takes a WebSocket upgrade');
  }
}

/** The upgrade request, re-made with the host id (and, for a tenant host, kind and organization) the object trusts. */
function forward(request: Request, host: Pick<HostIdentity, 'id'> & Partial<HostIdentity>): Request {
  const headers = new Headers(request.headers);
  headers.set('x-hangar-host-id', host.id);
  for (const h of ['x-hangar-host-kind', 'x-hangar-org-id']) headers.delete(h);
  if (host.kind === 'byo' && host.org_id) {
    headers.set('x-hangar-host-kind', 'byo');
    headers.set('x-hangar-org-id', host.org_id);
  }
  return new Request(request.url, { method: 'GET', headers });
}

export const AGENT_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: AGENT_HOST_PATH,
    auth: 'self',
    handler: async (c) => {
      requireUpgrade(c);
      const host = await authenticateHost(c.request, c.env);
      return c.env.HOST.get(c.env.HOST.idFromName(host.id)).fetch(forward(c.request, host));
    },
  }),
  // Which kind of host a key is for, so a starting agent knows whether it serves computers or the machine itself.
  route({
    method: 'GET',
    path: AGENT_WHOAMI_PATH,
    auth: 'self',
    handler: async (c) => {
      const host = await authenticateHost(c.request, c.env);
      const row = await c.env.DB.prepare('SELECT name FROM hosts WHERE id = ?').bind(host.id).first<{ name: string }>();
      return json({ host_id: host.id, kind: host.kind, name: row?.name ?? '' } satisfies WhoAmI);
    },
  }),
  route({
    method: 'GET',
    path: '/agent/v1/computers/:id/connect',
    auth: 'self',
    handler: async (c) => {
      requireUpgrade(c);
      const host = await authenticateHost(c.request, c.env);
      // Its own host, or the host a move is copying it to.
      const row = await c.env.DB.prepare('SELECT id FROM computers WHERE id = ? AND (host_id = ? OR moving_to_host_id = ?)')
        .bind(c.params.id, host.id, host.id)
        .first();
      if (!row) throw new ApiError('NOT_FOUND', 'computer not found on this host');
      return c.env.COMPUTER.get(c.env.COMPUTER.idFromName(c.params.id)).fetch(forward(c.request, { id: host.id }));
    },
  }),
];
