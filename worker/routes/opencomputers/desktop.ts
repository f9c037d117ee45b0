/**
 * The desktop of a tenant host (spec/05, Desktop (VNC)): POST
 * …/desktop/ticket answers a ticket and its `ws_url` once a VNC server answers
 * on the host (port 5900, or `port` in the body); the socket, on the API
 * host outside /api/v1 like the terminal's, carries the VNC session's bytes
 * (RFB over WebSocket, as noVNC and websockify speak it). The ticket is the
 * socket's only credential: about 30 s, once, for its tenant, host and port.
 */
import { DesktopTicketBody } from '../../../schema/desktop.ts';
import { ApiError, unwrap } from '../../../schema/errors.ts';
import { HOST_OP_HEADER } from '../../../durable-objects/host/client-header.ts';
import { ticketHost } from '../../../durable-objects/host/terminal-tickets.ts';
import { DEFAULT_VNC_PORT } from '../../../durable-objects/host/host-desktop.ts';
import { isoNow } from '../../http/ids.ts';
import { json } from '../../http/responses.ts';
import { route, type RouteDef } from '../../router.ts';
import { requireUpgrade } from '../exec-socket.ts';
import { hostStub, loadTenantHost, refOf, single } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

export const DESKTOP_SOCKET_PATH = '/opencomputers/ws/desktop';

export const OC_DESKTOP_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: `${OC_BASE}/hosts/:id/desktop/ticket`,
    auth: 'tenant',
    body: DesktopTicketBody,
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const t = unwrap(await hostStub(c.env, host.id).desktopTicket(refOf(host), c.body.port ?? DEFAULT_VNC_PORT, c.principal.credential_id));
      const ws_url = `${c.url.origin.replace(/^http/, 'ws')}${DESKTOP_SOCKET_PATH}?ticket=${encodeURIComponent(t.ticket)}`;
      return json(single({ ticket: t.ticket, ws_url, expires_at: isoNow(t.expires_at), host_id: host.id, port: t.port }), 201);
    },
  }),
  route({
    method: 'GET',
    path: DESKTOP_SOCKET_PATH,
    auth: 'self',
    handler: async (c) => {
      requireUpgrade(c.request, 'this endpoint takes a WebSocket upgrade (connect to the ws_url of POST …/desktop/ticket)');
      const ticket = c.query.get('ticket') ?? '';
      const hostId = ticketHost(ticket);
      if (!hostId) throw new ApiError('UNAUTHORIZED', 'missing or malformed desktop ticket; ask for one with POST …/desktop/ticket');
      const headers = new Headers({ upgrade: 'websocket', [HOST_OP_HEADER]: 'desktop', 'x-hangar-ticket': ticket, 'x-request-id': c.requestId });
      return hostStub(c.env, hostId).fetch(new Request(c.url.toString(), { headers }));
    },
  }),
];
