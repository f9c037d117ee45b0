/**
 * Desktop viewers: WebSockets carrying RFB to the computer's Xvnc
 * (127.0.0.1:5900 inside), over a relayed stream each, joined by the relay's
 * WebSocket bridge as websockify would (binary messages are the bytes).
 *  - token viewers (the viewer page, anything holding a stream token) go
 *    straight through: Xvnc itself asks nothing;
 *  - password viewers (native VNC clients through a bridge, or the page without
 *    a token) meet the password gate first (password-gate.ts).
 * Errors before the upgrade are the API's envelope: 404 no such computer, 409
 * not running, 503 with Retry-After while the desktop starts.
 */
import { ApiError, type ErrorCode, type Result } from '../../schema/errors.ts';
import { DESKTOP_VNC_PORT } from '../../schema/desktop.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import type { Caller, ComputerRecord } from '../computer/record.ts';
import { relayFailure } from '../relay/failures.ts';
import type { RelayMux } from '../relay/relay-mux.ts';
import type { RelayStream } from '../relay/relay-stream.ts';
import { bridgeWebSocket } from '../relay/websocket.ts';
import type { DesktopDaemon } from './desktop-daemon.ts';
import { START_WAIT_MS } from './desktop-daemon.ts';
import { PasswordGate } from './password-gate.ts';
import { parseViewerRequest } from './viewer-request.ts';
import type { ViewerPassword } from './viewer-password.ts';
import { CHALLENGE_BYTES, vncAuthMatches } from './vnc-auth.ts';

export interface VncViewersHost {
  record(): ComputerRecord | null;
  /** The caller's access to the running computer (404, 403, 409 otherwise). */
  requireRunning(caller: Caller): Promise<Result<ComputerRecord>>;
  relay: RelayMux;
  daemon: DesktopDaemon;
  password: ViewerPassword;
  /** A viewer came or went (auto-stop counts a watched desktop as in use). */
  changed(): void;
}

export class VncViewers {
  private readonly host: VncViewersHost;

  constructor(host: VncViewersHost) {
    this.host = host;
  }

  /** Viewers connected now (token and password ones). */
  count(): number {
    return this.host.relay.find((t) => t.kind === 'vnc' || t.kind === 'vnc-password').length;
  }

  async fetch(request: Request): Promise<Response> {
    const requestId = request.headers.get('x-request-id') ?? '';
    const fail = (code: ErrorCode, message: string, headers: Record<string, string> = {}) => errorResponse(new ApiError(code, message, headers), requestId);
    const open = parseViewerRequest(request.headers.get('x-hangar-desktop-viewer'));
    if (!open) return fail('BAD_REQUEST', 'malformed desktop viewer request');
    let credential: string | null = null;
    if (open.mode === 'token') {
      const access = await this.host.requireRunning(open.caller);
      if (!access.ok) return fail(access.code, access.message);
      credential = open.caller.credential_id;
    } else {
      const rec = this.host.record();
      if (!rec) return fail('NOT_FOUND', 'computer not found');
      if (rec.status !== 'running') return fail('COMPUTER_NOT_RUNNING', 'computer is not running');
      if (!this.host.password.mayTry()) return fail('RATE_LIMITED', 'too many failed viewer-password logins to this computer; try again in a minute', { 'retry-after': '60' });
    }
    const pair = new WebSocketPair();
    if (open.mode === 'token') {
      const stream = await this.vncStream('vnc', credential);
      if (typeof stream === 'string' || 'retry_after' in stream) {
        return typeof stream === 'string' ? fail('DESKTOP_UNAVAILABLE', stream) : fail('DESKTOP_STARTING', stream.message, { 'retry-after': String(stream.retry_after) });
      }
      bridgeWebSocket(pair[1], stream, 'bytes');
      void stream.done.then(() => this.host.changed());
    } else {
      const password = await this.host.password.current();
      const challenge = crypto.getRandomValues(new Uint8Array(CHALLENGE_BYTES));
      const gate = new PasswordGate({
        challenge,
        check: (response) => {
          const good = password !== null && vncAuthMatches(password, challenge, response);
          if (!good) this.host.password.failed();
          return good;
        },
        connect: async () => {
          const s = await this.vncStream('vnc-password', null);
          return typeof s === 'string' ? s : 'retry_after' in s ? s.message : s;
        },
      });
      // The gate stands in for the stream until the password checks out (it has the stream's surface).
      bridgeWebSocket(pair[1], gate as unknown as RelayStream, 'bytes');
      void gate.done.then(() => this.host.changed());
    }
    this.host.changed();
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /**
   * A stream to Xvnc, starting the desktop when nothing listens yet and waiting
   * for it a bounded time: the stream, a message why not, or "starting".
   */
  private async vncStream(kind: 'vnc' | 'vnc-password', credential: string | null): Promise<RelayStream | string | { message: string; retry_after: number }> {
    const deadline = Date.now() + START_WAIT_MS;
    let started = false;
    for (;;) {
      const opened = this.host.relay.open({ kind: 'computer_tcp', port: DESKTOP_VNC_PORT }, { tags: { kind, port: DESKTOP_VNC_PORT, credential_id: credential } });
      if (!opened.ok) return opened.message;
      const reset = await opened.value.accepted;
      if (!reset) return opened.value;
      if (reset.code !== 'refused') return relayFailure(reset, 'the desktop').message;
      if (!started) {
        started = true;
        const r = await this.host.daemon.start();
        if (!r.ok) return r.message;
      }
      if (Date.now() + 250 > deadline) return { message: 'the desktop is starting; try again in 2 s', retry_after: 2 };
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
