/**
 * A raw TCP connection to a port inside a computer, over a WebSocket:
 * GET /api/v1/computers/{id}/tcp/{port} with `Upgrade: websocket`. Binary
 * messages carry the connection's bytes both ways (text messages are sent as
 * their UTF-8 bytes); closing the socket closes the connection, and the
 * connection closing closes the socket. For the tenant only — the bearer
 * header, or `?auth=` with a stream token from a browser — and the port need
 * not be exposed: it is what `ssh -L` or `fly proxy` give (docs/relay.md).
 */
import { route, type RouteDef } from '../router.ts';
import { computerStub, requireComputerId } from '../computers/access.ts';
import { socketCaller } from '../computers/socket-auth.ts';
import { RATE_LIMITS, enforceRateLimit } from '../middleware/rate-limit.ts';
import { RELAY_PATH, RELAY_REQUEST_HEADER, encodeRelayRequest } from '../../durable-objects/relay/relay-request.ts';
import { requireUpgrade } from './exec-socket.ts';
import { portParam } from './ports.ts';

export const PORT_SOCKET_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/tcp/:port',
    auth: 'self',
    handler: async (c) => {
      requireUpgrade(c.request, 'this endpoint opens a WebSocket (Upgrade: websocket) carrying a TCP connection to the port');
      const id = requireComputerId(c.params.id);
      const port = portParam(c.params.port);
      const { caller, credential_id, principal } = await socketCaller(c, id);
      if (principal) await enforceRateLimit(c.env, `ws:${principal.rate_scope}`, principal.rate_limit ?? RATE_LIMITS.general);
      const open = encodeRelayRequest({ kind: 'tcp', caller, port, credential_id });
      const headers = new Headers({ upgrade: 'websocket', 'x-request-id': c.requestId, [RELAY_REQUEST_HEADER]: open });
      return computerStub(c.env, id).fetch(new Request(`https://relay${RELAY_PATH}`, { headers }));
    },
  }),
];
