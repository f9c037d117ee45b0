/**
 * The ComputerObject's relayed connections to its computer's ports: the
 * internal requests routes send it (relay-request.ts), each opened as a
 * stream on the computer socket through the RelayMux it composes.
 *  - tcp: a raw TCP connection over a WebSocket, for the tenant (its bytes
 *    as binary messages; what websockify does, and what VNC needs);
 *  - http: a request to an exposed port (or a WebSocket upgrade), already
 *    authorized by the preview host's route; a stopped computer answers 503,
 *    or — when the port asks for it — is started and the request held until
 *    it runs (at most WAKE_WAIT_MS).
 * Also the one-time tickets of preview links (kept until they expire).
 */
import { ApiError, type Result } from '../../schema/errors.ts';
import type { Env } from '../../worker/env.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import { previewError } from '../../worker/preview/preview-pages.ts';
import { decideAccess } from '../../worker/preview/preview-auth.ts';
import { apiKeyLive } from '../../worker/tenancy/principals.ts';
import type { Caller, ComputerRecord } from '../computer/record.ts';
import { PortTable, type PortRecord } from './port-table.ts';
import { relayFailure } from './failures.ts';
import { relayHttp } from './http.ts';
import { useTicketOnce } from './used-tickets.ts';
import { parseRelayRequest, RELAY_REQUEST_HEADER, type RelayRequest } from './relay-request.ts';
import type { RelayMux } from './relay-mux.ts';
import { bridgeWebSocket } from './websocket.ts';

/** How long a request that woke its computer is held for the computer to run. */
export const WAKE_WAIT_MS = 90_000;
/** How long a request to a running computer waits for its agent to come back. */
const AGENT_WAIT_MS = 10_000;
const TICKET_PREFIX = 'preview-ticket:';

/** What the relay needs of its object. */
export interface ComputerRelayHost {
  /** The caller's access to a running computer (404, 403, 409 otherwise). */
  requireRunning(caller: Caller): Promise<Result<{ name: string }>>;
  record(): ComputerRecord | null;
  /** True while the computer runs and its agent is attached. */
  ready(): boolean;
  /** Waits up to `ms` for an agent to attach (it redials within seconds of a drop). */
  whenAttached(ms: number): Promise<unknown>;
  /** Starts a stopped computer (credits allowing). */
  start(): Promise<Result<unknown>>;
  storage: DurableObjectStorage;
  env: Env;
}

export class ComputerRelay {
  readonly mux: RelayMux;
  private readonly host: ComputerRelayHost;
  private readonly ports: PortTable;

  constructor(mux: RelayMux, host: ComputerRelayHost) {
    this.mux = mux;
    this.host = host;
    this.ports = new PortTable(host.storage, host.env);
  }

  /** A port's record changed (routes call this after writing D1); `close` also ends its open connections. */
  async portChanged(port: number, rec: PortRecord | null, close: string | null): Promise<void> {
    const id = this.host.record()?.id;
    if (id) await this.ports.set(id, port, rec);
    if (close) this.closePort(port, close);
  }

  async fetch(request: Request): Promise<Response> {
    const open = parseRelayRequest(request.headers.get(RELAY_REQUEST_HEADER));
    if (!open) return errorResponse(new ApiError('BAD_REQUEST', 'malformed relay request'), request.headers.get('x-request-id') ?? '');
    if (open.kind === 'tcp') return this.tcp(request, open);
    if (open.kind === 'http') return this.http(request, open);
    return errorResponse(new ApiError('BAD_REQUEST', `a computer serves no ${open.kind} requests`), request.headers.get('x-request-id') ?? '');
  }

  /** Ends the connections of a port (it was removed, or its token rotated). */
  closePort(port: number, message: string): number {
    return this.mux.resetWhere((t) => t.port === port, 'closed', message);
  }

  /** Marks a preview link's ticket of `port` used, unless it already was or the port is gone. */
  async redeemTicket(jti: string, expS: number, port: number): Promise<'ok' | 'used' | 'not_exposed'> {
    const id = this.host.record()?.id;
    if (!id || !(await this.ports.get(id, port))) return 'not_exposed';
    return (await useTicketOnce(this.host.storage, TICKET_PREFIX, jti, expS)) ? 'ok' : 'used';
  }

  private async tcp(request: Request, open: Extract<RelayRequest, { kind: 'tcp' }>): Promise<Response> {
    const requestId = request.headers.get('x-request-id') ?? '';
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

  private async http(request: Request, open: Extract<RelayRequest, { kind: 'http' }>): Promise<Response> {
    const where = `port ${open.port} of computer ${open.slug}`;
    try {
      const rec = this.host.record();
      if (!rec) throw new ApiError('NOT_FOUND', `no computer has the preview name ${open.slug}`);
      const entry = await this.ports.get(rec.id, open.port);
      // A cookie's key is taken as live for the few seconds every key revocation takes to reach all isolates.
      const access = await decideAccess(entry, { port: open.port, slug: open.slug, method: request.method, path: open.path, https: open.https, who: open.who }, (kid) =>
        apiKeyLive(this.host.env, kid),
      );
      if (access.kind === 'respond') return access.response;
      await this.running(where, entry!.wake);
      return await relayHttp(this.mux, request, {
        target: { kind: 'computer_tcp', port: open.port },
        path: access.path,
        websocket: open.websocket,
        tags: { port: open.port, credential_id: access.credential_id, kind: open.websocket ? 'websocket' : 'http' },
        maxBody: open.max_body,
        where,
      });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return previewError(err, request, open.request_id);
    }
  }

  /** Returns once the computer runs with its agent attached; throws the 503 (or the failed start) otherwise. */
  private async running(where: string, wake: boolean): Promise<void> {
    if (this.host.ready()) return;
    const rec = this.host.record();
    if (!rec) throw new ApiError('NOT_FOUND', `${where} does not exist`);
    const stoppedMessage = `the computer is ${rec.status}: ${where} answers once it runs again`;
    if (rec.status === 'running') {
      // Running without its agent: the agent is redialing (a network blip, a restart of this object).
      await this.host.whenAttached(AGENT_WAIT_MS);
      if (this.host.ready()) return;
      if (!wake) throw new ApiError('AGENT_UNAVAILABLE', `${where} cannot be reached: its host agent is not connected; try again shortly`);
    }
    if (!wake) throw new ApiError('COMPUTER_STOPPED', stoppedMessage);
    const deadline = Date.now() + WAKE_WAIT_MS;
    let tried = false;
    while (!this.host.ready()) {
      const status = this.host.record()?.status;
      // Stopped (or stopping, then stopped): start it, once; the lifecycle answers when the agent has.
      if (status === 'stopped' && !tried) {
        tried = true;
        const started = await this.host.start();
        if (!started.ok && this.host.record()?.status === 'stopped') throw new ApiError('COMPUTER_STOPPED', `${stoppedMessage} (starting it failed: ${started.message})`);
        continue;
      }
      if (status === undefined || status === 'error' || status === 'deleting' || (tried && status === 'stopped') || Date.now() > deadline) {
        throw new ApiError('COMPUTER_STOPPED', `the computer did not come up in time (${status ?? 'gone'}); ${where} was not reached`, { 'retry-after': '5' });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
