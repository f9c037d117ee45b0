/**
 * The desktop of a tenant host (OpenComputers): VNC to the machine's own VNC
 * server (macOS Screen Sharing, x11vnc, wayvnc, TigerVNC… on a local port,
 * 5900 unless the ticket names another), relayed over the host agent's socket
 * as a TCP connection on the host's loopback (`host_tcp`).
 *
 * A ticket is given only when a VNC server answers there: the object opens a
 * connection, reads the server's RFB greeting and closes it, so a machine
 * without one gets a clear error at ticket time rather than a socket that
 * dies. The ticket (the terminal tickets' store and rules: once, ~30 s, bound
 * to tenant and key) then opens one WebSocket carrying the VNC session's
 * bytes both ways; authentication is the VNC server's own, between it and the
 * client.
 */
import { ApiError, fail, ok, type Result } from '../../schema/errors.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import { relayFailure } from '../relay/failures.ts';
import type { RelayMux } from '../relay/relay-mux.ts';
import type { RelayStream } from '../relay/relay-stream.ts';
import { bridgeWebSocket } from '../relay/websocket.ts';
import type { HostRef } from './tenant-host.ts';
import type { TerminalTickets } from './terminal-tickets.ts';

export const DEFAULT_VNC_PORT = 5900;
/** How long the probe waits for the VNC server's greeting. */
const GREETING_TIMEOUT_MS = 5_000;
/** Desktop tickets live in the terminal tickets' table, told apart by this session name. */
const SESSION_PREFIX = 'vnc-';

export interface HostDesktopHost {
  /** The host when its agent is connected (and it is not revoked); otherwise why not. */
  usable(ref: HostRef): Promise<Result<HostRef>>;
  relay: RelayMux;
  tickets: TerminalTickets;
  /** Whether the API key a ticket was minted with still stands (the credentials contract). */
  admits(credentialId: string | null): Promise<boolean>;
}

export class HostDesktop {
  private readonly host: HostDesktopHost;

  constructor(host: HostDesktopHost) {
    this.host = host;
  }

  /** A ticket for a VNC session to the host's VNC server on `port`, once one has answered there. */
  async ticket(ref: HostRef, port: number, credentialId: string | null): Promise<Result<{ ticket: string; expires_at: number; port: number }>> {
    const u = await this.host.usable(ref);
    if (!u.ok) return u;
    const probe = await this.probe(port);
    if (!probe.ok) return probe;
    const t = await this.host.tickets.issue(ref.id, { session_id: `${SESSION_PREFIX}${port}`, org_id: ref.org_id, credential_id: credentialId });
    return ok({ ...t, port });
  }

  /** The WebSocket of a ticket (used once): the VNC server's bytes, both ways. */
  async open(ticket: string, requestId: string): Promise<Response> {
    const refused = () => errorResponse(new ApiError('UNAUTHORIZED', 'unknown, used or expired desktop ticket; ask for a new one with POST …/desktop/ticket'), requestId);
    const grant = await this.host.tickets.redeem(ticket);
    if (!grant || !grant.session_id.startsWith(SESSION_PREFIX)) return refused();
    if (!(await this.host.admits(grant.credential_id))) return errorResponse(new ApiError('UNAUTHORIZED', 'the API key this ticket was made with is revoked'), requestId);
    const port = Number(grant.session_id.slice(SESSION_PREFIX.length));
    const opened = this.host.relay.open({ kind: 'host_tcp', port }, { tags: { kind: 'vnc', port, credential_id: grant.credential_id } });
    if (!opened.ok) return errorResponse(new ApiError(opened.code, opened.message), requestId);
    const reset = await opened.value.accepted;
    if (reset) return errorResponse(relayFailure(reset, `port ${port} of the host`), requestId);
    const pair = new WebSocketPair();
    bridgeWebSocket(pair[1], opened.value, 'bytes');
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** Whether a VNC server answers on the port: it speaks first, with "RFB xxx.yyy\n". */
  private async probe(port: number): Promise<Result<true>> {
    const opened = this.host.relay.open({ kind: 'host_tcp', port }, { tags: { kind: 'vnc-probe', port } });
    if (!opened.ok) return opened;
    const stream = opened.value;
    const reset = await stream.accepted;
    if (reset) {
      if (reset.code === 'refused') {
        return fail(
          'PORT_NOT_LISTENING',
          `no VNC server is listening on port ${port} of this host: turn on Screen Sharing (macOS) or start one (x11vnc, wayvnc, TigerVNC) on 127.0.0.1:${port}, or ask for the port it uses`,
        );
      }
      const e = relayFailure(reset, `port ${port} of the host`);
      return fail(e.code, e.message);
    }
    const greeting = await readGreeting(stream);
    stream.reset('closed', 'probe done');
    if (greeting === null) return fail('UPSTREAM_TIMEOUT', `port ${port} of this host accepted a connection but sent no VNC greeting within ${GREETING_TIMEOUT_MS / 1000} s`);
    if (!/^RFB \d{3}\.\d{3}\n$/.test(greeting)) return fail('UPSTREAM_ERROR', `port ${port} of this host is not a VNC server (it did not greet with "RFB 003.00x")`);
    return ok(true);
  }
}

/** The first 12 bytes the server sends, as text; null when they do not come in time. */
function readGreeting(stream: RelayStream): Promise<string | null> {
  return new Promise((resolve) => {
    let got = new Uint8Array(0);
    const timer = setTimeout(() => resolve(null), GREETING_TIMEOUT_MS);
    const finish = (v: string | null) => {
      clearTimeout(timer);
      resolve(v);
    };
    stream.attach({
      data(payload) {
        stream.consumed(payload.byteLength);
        const next = new Uint8Array(got.byteLength + payload.byteLength);
        next.set(got);
        next.set(payload, got.byteLength);
        got = next;
        if (got.byteLength >= 12) finish(new TextDecoder('latin1').decode(got.subarray(0, 12)));
      },
      end() {
        finish(got.byteLength ? new TextDecoder('latin1').decode(got) : null);
      },
    });
    void stream.done.then(() => finish(got.byteLength >= 12 ? new TextDecoder('latin1').decode(got.subarray(0, 12)) : null));
  });
}
