/**
 * Where host agents dial in: the host socket (HostObject) and one socket per
 * computer (ComputerObject). Both are WebSocket upgrades authenticated with the
 * host key; the verified host id travels to the object in a header.
 */
import { ApiError } from '../../schema/errors.ts';
import { AGENT_HOST_PATH } from '../../schema/protocol.ts';
import { authenticateHost } from '../middleware/host-key.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';

function requireUpgrade(c: RouteContext): void {
  if (c.request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
    throw new ApiError('BAD_REQUEST', 'this endpoint takes a WebSocket upgrade');
  }
}

/** The upgrade request, re-made with the host id the object trusts. */
function forward(request: Request, hostId: string): Request {
  const headers = new Headers(request.headers);
  headers.set('x-hangar-host-id', hostId);
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
      return c.env.HOST.get(c.env.HOST.idFromName(host.id)).fetch(forward(c.request, host.id));
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
      return c.env.COMPUTER.get(c.env.COMPUTER.idFromName(c.params.id)).fetch(forward(c.request, host.id));
    },
  }),
];
