/**
 * A scripted host-mode agent (OpenComputers) for Workers-runtime tests: it
 * dials the host socket with a tenant host's key over a real WebSocket, says
 * a host-mode hello, validates every server message with the protocol's
 * schemas (a malformed one fails the test, as agent-peer.ts does), answers
 * requests with handlers (a healthy machine's by default), and sends output
 * frames and exits as a test scripts them. Relayed streams (tunnels) go to
 * its RelayPeer, which plays the machine's ports.
 */
import { z } from 'zod';
import {
  AGENT_HOST_PATH,
  FRAME_OUTPUT,
  FRAME_STDIN,
  HostModeNotice,
  HostRequest,
  PROTOCOL,
  Welcome,
  decodeFrame,
  encodeFrame,
  frameKind,
  type AgentErrorCode,
  type HostModeHello,
  type HostRequestType,
  type OutputStream,
  type ProcExit,
} from '../../schema/protocol.ts';
import { FRAME_RELAY, isRelayMessage } from '../../schema/relay.ts';
import { dial, Inbox, listen } from './agent-peer.ts';
import { RelayPeer } from './relay-peer.ts';
import { expectJson, tenantFetch } from './helpers.ts';
import { join } from './ws-client.ts';

const ServerMessage = z.union([Welcome, HostRequest]);
type ServerMessage = z.infer<typeof ServerMessage>;
type Request<T extends HostRequestType> = Extract<HostRequest, { type: T }>;
export type PeerReply = { data: unknown } | { error: { code: AgentErrorCode; message: string } } | 'no-reply';
type Handler<T extends HostRequestType> = (req: Request<T>) => PeerReply | Promise<PeerReply>;

export const OC = '/api/v1/opencomputers';

export interface TenantHost {
  id: string;
  key: string;
  body: Record<string, unknown>;
}

/** Registers a tenant host through the API; its key is shown only here. */
export async function registerTenantHost(apiKey: string, body: Record<string, unknown> = { name: 'my-box' }): Promise<TenantHost> {
  const r = await expectJson<{ id: string; host_key: string } & Record<string, unknown>>(await tenantFetch(apiKey, `${OC}/hosts`, { method: 'POST', body }), 201);
  return { id: r.id, key: r.host_key, body: r };
}

export function helloOf(overrides: Partial<HostModeHello> = {}): HostModeHello {
  return {
    type: 'hello',
    mode: 'host',
    protocol: PROTOCOL,
    agent_version: 'test-peer',
    hostname: 'box.test',
    os: 'linux',
    os_release: '6.1.0',
    arch: 'x64',
    cpus: 4,
    memory_mb: 8192,
    node_version: 'v20.0.0',
    user: { name: 'alice', home: '/home/alice', shell: '/bin/zsh' },
    fs_root: null,
    terminal: true,
    procs: [],
    fault: null,
    ...overrides,
  };
}

const DEFAULTS: { [T in HostRequestType]: Handler<T> } = {
  'proc.start': () => ({ data: { pid: 4242 } }),
  'proc.attach': () => ({ data: { running: true, exit: null } }),
  'proc.resize': () => ({ data: {} }),
  'proc.signal': () => ({ data: {} }),
  'proc.close_stdin': () => ({ data: {} }),
  'proc.forget': () => ({ data: {} }),
  'fs.list': (r) => ({ data: { path: r.path, entries: [], truncated: false } }),
  'fs.stat': () => ({ error: { code: 'NO_SUCH_PATH', message: 'no such file' } }),
  'fs.mkdir': (r) => ({ data: { path: r.path } }),
  'fs.delete': (r) => ({ data: { path: r.path } }),
  'fs.prepare': () => ({ error: { code: 'NO_SUCH_PATH', message: 'no such file' } }),
};

export class HostModePeer {
  private readonly inbox = new Inbox<ServerMessage>();
  private readonly handlers = new Map<HostRequestType, Handler<HostRequestType>>();
  private readonly offsets = new Map<string, number>();
  /** Every request the server sent, in order. */
  readonly requests: HostRequest[] = [];
  /** Every notice (acks, secrets) the server sent, in order. */
  readonly notices: HostModeNotice[] = [];
  /** Stdin bytes received per process. */
  private readonly stdin = new Map<string, Uint8Array[]>();
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Relayed streams the object opens on this socket: connections to the machine's ports (relay-peer.ts). */
  readonly relay: RelayPeer;

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => ws.addEventListener('close', (ev) => resolve({ code: ev.code, reason: ev.reason })));
    this.relay = new RelayPeer(
      (t) => ws.send(t),
      (b) => ws.send(b),
    );
    listen(ws, ServerMessage, this.inbox, 'host-mode peer', (m) => void this.onMessage(m), {
      binary: (bytes) => {
        if (frameKind(bytes) === FRAME_RELAY) return this.relay.onFrame(bytes);
        const f = decodeFrame(bytes);
        if (!f || f.kind !== FRAME_STDIN) return `a binary frame the agent does not take (${bytes[0]})`;
        this.stdin.set(f.proc_id, [...(this.stdin.get(f.proc_id) ?? []), f.payload.slice()]);
        this.send({ type: 'proc.stdin_ack', proc_id: f.proc_id, offset: f.offset + f.payload.byteLength });
        return null;
      },
      notice: (raw) => {
        if (isRelayMessage(raw)) return this.relay.onMessage(raw);
        const type = (raw as { type?: unknown } | null)?.type;
        if (type !== 'proc.ack' && type !== 'secrets.set' && type !== 'procs.forget') return 'not-a-notice';
        const n = HostModeNotice.safeParse(raw);
        if (!n.success) return `malformed notice ${JSON.stringify(raw)}`;
        this.notices.push(n.data);
        return null;
      },
    });
  }

  /** Dials with a host key; says `hello` unless told not to (then send one with `hello`). */
  static async connect(key: string, hello: Partial<HostModeHello> | null = {}): Promise<HostModePeer> {
    const peer = new HostModePeer(await dial(AGENT_HOST_PATH, key));
    if (hello) peer.send(helloOf(hello));
    return peer;
  }

  /** Connects, says hello and waits for the welcome. */
  static async online(key: string, hello: Partial<HostModeHello> = {}): Promise<HostModePeer> {
    const peer = await HostModePeer.connect(key, hello);
    await peer.take('welcome');
    return peer;
  }

  /** Sends while the socket is open (an answer after the test closed it goes nowhere, as on a real network). */
  send(msg: unknown): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  take<T extends ServerMessage['type']>(type: T): Promise<Extract<ServerMessage, { type: T }>> {
    return this.inbox.take(type, 'host-mode peer');
  }

  /** Answers requests of a type with `handler` from now on (default: DEFAULTS). */
  on<T extends HostRequestType>(type: T, handler: Handler<T>): void {
    this.handlers.set(type, handler as unknown as Handler<HostRequestType>);
  }

  /** The secrets the server last handed this agent. */
  get secrets(): Record<string, string> | null {
    const last = this.notices.filter((n) => n.type === 'secrets.set').at(-1);
    return last?.type === 'secrets.set' ? last.env : null;
  }

  /** Sends output of a process at the next offset of its stream (or at `at`). */
  output(procId: string, stream: OutputStream, data: string | Uint8Array, at?: number): void {
    const payload = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const key = `${procId}/${stream}`;
    const offset = at ?? this.offsets.get(key) ?? 0;
    this.offsets.set(key, offset + payload.byteLength);
    this.ws.send(encodeFrame({ kind: FRAME_OUTPUT, stream, proc_id: procId, offset, payload }));
  }

  exit(procId: string, exitCode: number, more: Partial<ProcExit> = {}): void {
    this.send({ type: 'proc.exit', proc_id: procId, exit_code: exitCode, signal: null, timed_out: false, duration_ms: 1, ...more });
  }

  stdinOf(procId: string): string {
    return new TextDecoder().decode(join(this.stdin.get(procId) ?? []));
  }

  close(code = 1000, reason = 'peer closed'): void {
    try {
      this.ws.close(code, reason);
    } catch {
      /* already closed */
    }
  }

  private async onMessage(m: ServerMessage): Promise<void> {
    if (m.type === 'welcome') return;
    this.requests.push(m);
    const handler = (this.handlers.get(m.type) ?? DEFAULTS[m.type]) as Handler<typeof m.type>;
    const reply = await handler(m as never);
    if (reply === 'no-reply') return;
    if ('data' in reply) this.send({ type: 'result', id: m.id, ok: true, data: reply.data });
    else this.send({ type: 'result', id: m.id, ok: false, error: reply.error });
  }
}
