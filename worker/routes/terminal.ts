/**
 * Terminals (spec/03-exec.txt, Terminal): POST …/terminal starts a login shell
 * on a PTY and answers where to attach; the socket is served by this Worker
 * and relayed by the computer's Durable Object. Browsers cannot send headers
 * on a WebSocket, so the socket takes a stream token (`?auth=`, bound to the
 * computer and organization) or, for other clients, the usual bearer header.
 */
import { ApiError, unwrap } from '../../schema/errors.ts';
import { TerminalCreate, TerminalResize } from '../../schema/api.ts';
import { ProcId } from '../../schema/protocol.ts';
import { json } from '../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { callerOf, computerStub, requireComputerId } from '../computers/access.ts';
import { grantOf, mintStreamToken } from '../computers/stream-token.ts';
import { socketCaller } from '../computers/socket-auth.ts';
import { CLIENT_OPEN_HEADER, encodeClientOpen } from '../../durable-objects/exec/client-sockets.ts';
import { requireUpgrade } from './exec-socket.ts';

const wsOrigin = (c: RouteContext) => c.url.origin.replace(/^http/, 'ws');

function requireSessionId(raw: string): string {
  if (!ProcId.safeParse(raw).success) throw new ApiError('NOT_FOUND', 'terminal session not found');
  return raw;
}

export const TERMINAL_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/terminal',
    auth: 'tenant',
    body: TerminalCreate,
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const { session_id } = unwrap(await computerStub(c.env, id).createTerminal(callerOf(c.principal), c.body));
      const { token, expires_at } = await mintStreamToken(c.env, grantOf(c.principal), id);
      const ws_url = `${wsOrigin(c)}/api/v1/computers/${id}/terminal/${session_id}/ws?auth=${encodeURIComponent(token)}`;
      return json({ data: { session_id, ws_url, stream_auth: token, expires_at, computer_id: id } }, 201);
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/terminal/:session_id/ws',
    auth: 'self',
    handler: async (c) => {
      requireUpgrade(c.request, 'this endpoint takes a WebSocket upgrade');
      const id = requireComputerId(c.params.id);
      const { caller } = await socketCaller(c, id);
      const open = encodeClientOpen({ kind: 'terminal', caller, session_id: requireSessionId(c.params.session_id) });
      const headers = new Headers({ upgrade: 'websocket', 'x-request-id': c.requestId, [CLIENT_OPEN_HEADER]: open });
      return computerStub(c.env, id).fetch(new Request(c.url.toString(), { headers }));
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/pty/:session_id/resize',
    auth: 'tenant',
    body: TerminalResize,
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      unwrap(await computerStub(c.env, id).resizeTerminal(callerOf(c.principal), requireSessionId(c.params.session_id), c.body));
      return json({ status: 'ok' });
    },
  }),
];
