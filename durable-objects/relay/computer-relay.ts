/**
 * The ComputerObject's relayed connections to its computer's ports: the
 * internal requests routes send it (relay-request.ts), each opened as a
 * stream on the computer socket through the RelayMux it composes.
 *  - tcp: a raw TCP connection over a WebSocket, for the tenant (its bytes
 *    as binary messages; what websockify does, and what VNC needs).
 */
import { ApiError, type Result } from '../../schema/errors.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import type { Caller } from '../computer/record.ts';
import { relayFailure } from './failures.ts';
import { parseRelayRequest, RELAY_REQUEST_HEADER } from './relay-request.ts';
import type { RelayMux } from './relay-mux.ts';
import { bridgeWebSocket } from './websocket.ts';

/** What the relay needs of its object. */
export interface ComputerRelayHost {
  /** The caller's access to a running computer (404, 403, 409 otherwise). */
  requireRunning(caller: Caller): Promise<Result<{ name: string }>>;
}

export class ComputerRelay {
  readonly mux: RelayMux;
  private readonly host: ComputerRelayHost;

  constructor(mux: RelayMux, host: ComputerRelayHost) {
    this.mux = mux;
    this.host = host;
  }

  async fetch(request: Request): Promise<Response> {
    const requestId = request.headers.get('x-request-id') ?? '';
    const open = parseRelayRequest(request.headers.get(RELAY_REQUEST_HEADER));
    if (!open) return errorResponse(new ApiError('BAD_REQUEST', 'malformed relay request'), requestId);
    const access = await this.host.requireRunning(open.caller);
    if (!access.ok) return errorResponse(new ApiError(access.code, access.message), requestId);
    const where = `port ${open.port} of computer ${access.value.name}`;
    const opened = this.mux.open({ kind: 'computer_tcp', port: open.port }, { tags: { port: open.port, credential_id: open.credential_id, kind: 'tcp' } });
    if (!opened.ok) return errorResponse(new ApiError(opened.code, opened.message), requestId);
    const stream = opened.value;
    const refused = await stream.accepted;
    if (refused) return errorResponse(relayFailure(refused, where), requestId);
    const pair = new WebSocketPair();
    bridgeWebSocket(pair[1], stream, 'bytes');
    return new Response(null, { status: 101, webSocket: pair[0] });
  }
}
