/**
 * Terminals on a tenant host (spec/05, Terminal). POST …/terminal/ticket
 * starts a login shell on a PTY on the machine (or, with `session_id`, picks
 * one that exists, to re-attach) and answers a ticket and its `ws_url`: the
 * socket is served at /opencomputers/ws/terminal on the API host, outside
 * /api/v1, as the page shows. The ticket is the socket's only credential:
 * good for about 30 s, once, for its tenant, host and session. The socket
 * behaves as a computer's terminal does (docs/streams.md): raw bytes both
 * ways, JSON resize, recent output replayed on re-attach, the same close codes.
 */
import { TerminalTicketBody } from '../../../schema/api-opencomputers.ts';
import { ApiError, unwrap } from '../../../schema/errors.ts';
import { HOST_OP_HEADER } from '../../../durable-objects/host/client-header.ts';
import { ticketHost } from '../../../durable-objects/host/terminal-tickets.ts';
import { isoNow } from '../../http/ids.ts';
import { json } from '../../http/responses.ts';
import { route, type RouteDef } from '../../router.ts';
import { requireUpgrade } from '../exec-socket.ts';
import { hostStub, loadTenantHost, refOf, single } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

export const TERMINAL_SOCKET_PATH = '/opencomputers/ws/terminal';

export const OC_TERMINAL_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: `${OC_BASE}/hosts/:id/terminal/ticket`,
    auth: 'tenant',
    body: TerminalTicketBody,
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const t = unwrap(await hostStub(c.env, host.id).terminalTicket(refOf(host), c.body, c.principal.credential_id));
      const ws_url = `${c.url.origin.replace(/^http/, 'ws')}${TERMINAL_SOCKET_PATH}?ticket=${encodeURIComponent(t.ticket)}`;
      return json(single({ ticket: t.ticket, ws_url, expires_at: isoNow(t.expires_at), session_id: t.session_id, host_id: host.id }), 201);
    },
  }),
  route({
    method: 'GET',
    path: TERMINAL_SOCKET_PATH,
    auth: 'self',
    handler: async (c) => {
      requireUpgrade(c.request, 'this endpoint takes a WebSocket upgrade (connect to the ws_url of POST …/terminal/ticket)');
      const ticket = c.query.get('ticket') ?? '';
      const hostId = ticketHost(ticket);
      if (!hostId) throw new ApiError('UNAUTHORIZED', 'missing or malformed terminal ticket; ask for one with POST …/terminal/ticket');
      const headers = new Headers({ upgrade: 'websocket', [HOST_OP_HEADER]: 'terminal', 'x-hangar-ticket': ticket, 'x-request-id': c.requestId });
      return hostStub(c.env, hostId).fetch(new Request(c.url.toString(), { headers }));
    },
  }),
];
