/**
 * A scripted host agent for Workers-runtime tests. It dials the Worker's agent
 * endpoints over real WebSockets, speaks schema/protocol.ts, validates every
 * message the server sends with the protocol's schemas (a malformed one is a
 * protocol violation that fails the test), and answers computer requests with
 * handlers: by default those of a healthy host, overridable per test.
 */
import { SELF, env, runInDurableObject } from 'cloudflare:test';
import { afterEach, expect } from 'vitest';
import type { z } from 'zod';
import {
  AGENT_HOST_PATH,
  FRAME_DISK,
  FRAME_OUTPUT,
  FRAME_STDIN,
  HostServerMessage,
  ComputerNotice,
  ProcAck,
  ComputerRequest,
  PROTOCOL,
  agentComputerPath,
  decodeDiskFrame,
  decodeFrame,
  encodeFrame,
  frameKind,
  type ActualState,
  type DiskFrame,
  type OutputStream,
  type ProcExit,
  type AgentErrorCode,
  type ComputerAgentMessage,
  type ComputerRequestType,
  type RESULT_SCHEMAS,
} from '../../schema/protocol.ts';
import { FRAME_RELAY, isRelayMessage } from '../../schema/relay.ts';
import { expectJson, operatorFetch, uniqueSlug } from './helpers.ts';
import { RelayPeer } from './relay-peer.ts';
import { join } from './ws-client.ts';

const WAIT_MS = 4000;

export type Req<T extends ComputerRequestType> = Extract<ComputerRequest, { type: T }>;
type ResultData<T extends ComputerRequestType> = z.input<(typeof RESULT_SCHEMAS)[T]>;
/** What a handler answers: a result's data, an agent error, or nothing at all. */
export type Reply<T extends ComputerRequestType> =
  | { data: ResultData<T> }
  | { error: { code: z.infer<typeof AgentErrorCode>; message: string } }
  | 'no-reply';
export type Handler<T extends ComputerRequestType> = (req: Req<T>) => Reply<T> | Promise<Reply<T>>;
type AnyHandler = (req: ComputerRequest) => Reply<ComputerRequestType> | Promise<Reply<ComputerRequestType>>;

// ------------------------------------------------------------ bookkeeping

/** Messages of one socket, consumed in arrival order by `take`. */
export class Inbox<M extends { type: string }> {
  private readonly unread: M[] = [];
  private readonly waiters: { type: string; resolve: (m: M) => void; reject: (e: Error) => void }[] = [];
  readonly all: M[] = [];
  private broken: Error | null = null;

  push(m: M): void {
    this.all.push(m);
    const i = this.waiters.findIndex((w) => w.type === m.type);
    if (i >= 0) this.waiters.splice(i, 1)[0].resolve(m);
    else this.unread.push(m);
  }

  fail(e: Error): void {
    this.broken = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
  }

  take<T extends M['type']>(type: T, label: string): Promise<Extract<M, { type: T }>> {
    if (this.broken) return Promise.reject(this.broken);
    const i = this.unread.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.unread.splice(i, 1)[0] as Extract<M, { type: T }>);
    return new Promise((resolve, reject) => {
      const w = { type, resolve: resolve as (m: M) => void, reject };
      this.waiters.push(w);
      setTimeout(() => {
        const at = this.waiters.indexOf(w);
        if (at < 0) return;
        this.waiters.splice(at, 1);
        reject(new Error(`${label}: no ${type} within ${WAIT_MS} ms; received so far: ${this.all.map((m) => m.type).join(', ') || 'nothing'}`));
      }, WAIT_MS);
    });
  }
}

const violations: string[] = [];
const openSockets = new Set<WebSocket>();

/** Call at a test file's top level: closes every peer after each test and fails it if the server broke the protocol. */
export function useAgentPeers(): void {
  afterEach(() => {
    for (const ws of openSockets) close(ws);
    openSockets.clear();
    const seen = violations.splice(0);
    expect(seen, 'protocol violations by the server').toEqual([]);
  });
}

function close(ws: WebSocket): void {
  try {
    ws.close(1000, 'test over');
  } catch {
    /* already closed */
  }
}

export async function dial(path: string, hostKey: string): Promise<WebSocket> {
  const res = await SELF.fetch(`https://agent.test${path}`, { headers: { Upgrade: 'websocket', Authorization: `Bearer ${hostKey}` } });
  const ws = res.webSocket;
  if (res.status !== 101 || !ws) throw new Error(`dialing ${path}: HTTP ${res.status} ${await res.text()}`);
  ws.accept();
  // With this compatibility date binary messages arrive as Blobs unless asked otherwise.
  ws.binaryType = 'arraybuffer';
  openSockets.add(ws);
  ws.addEventListener('close', () => openSockets.delete(ws));
  return ws;
}

/** What a computer socket takes besides requests: binary frames and notices; each returns a violation, or null when fine. */
export interface SideChannels {
  binary(bytes: Uint8Array): string | null;
  notice(raw: unknown): string | null | 'not-a-notice';
}

/** Parses a server message with `schema`; anything else is recorded as a violation and breaks the inbox. */
export function listen<S extends z.ZodType<{ type: string }>>(
  ws: WebSocket,
  schema: S,
  inbox: Inbox<z.infer<S>>,
  label: string,
  onMessage?: (m: z.infer<S>) => void,
  side?: SideChannels,
): void {
  const violate = (what: string) => {
    violations.push(what);
    inbox.fail(new Error(what));
    ws.close(4400, 'malformed message');
  };
  ws.addEventListener('message', (ev) => {
    if (side && typeof ev.data !== 'string') {
      const v = side.binary(new Uint8Array(ev.data as ArrayBuffer));
      if (v) violate(`${label}: ${v}`);
      return;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data));
    } catch {
      raw = ev.data;
    }
    const notice = side ? side.notice(raw) : 'not-a-notice';
    if (notice !== 'not-a-notice') {
      if (notice) violate(`${label}: ${notice}`);
      return;
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      // As a real agent would: hang up, so the server's waiting request fails now rather than at its timeout.
      violate(`${label} got a malformed message ${JSON.stringify(raw)}: ${parsed.error.message}`);
      return;
    }
    inbox.push(parsed.data);
    onMessage?.(parsed.data);
  });
}

// ------------------------------------------------------------ hosts

export interface RegisteredHost {
  id: string;
  key: string;
  region: string;
}

/** Registers a fleet host through the operator API, in a region of its own unless one is given. */
export async function registerHost(region = uniqueSlug('region')): Promise<RegisteredHost> {
  const res = await operatorFetch('/api/v1/admin/hosts', { method: 'POST', body: { name: 'test host', region } });
  const body = await expectJson<{ data: { id: string; host_key: string } }>(res, 201);
  return { id: body.data.id, key: body.data.host_key, region };
}

export interface HostPeer extends RegisteredHost {
  welcome: Extract<HostServerMessage, { type: 'welcome' }>;
  /** The next server message of this type (attach orders, detach orders). */
  take<T extends HostServerMessage['type']>(type: T): Promise<Extract<HostServerMessage, { type: T }>>;
  /** Opens the computer socket without a word yet: set handlers, then `attach`. */
  dial(id: string): Promise<ComputerPeer>;
  /** Opens the computer socket and says `attached` with the given state (dial + attach). */
  computer(id: string, opts: { state: ActualState }): Promise<ComputerPeer>;
  close(): void;
}

/** What a host reports in its hello: its CPUs and memory (placement's capacity). */
export interface HostSize {
  cpus: number;
  memory_mb: number;
}

/** What a scripted host says in its hello beyond its computers: its size (8 CPUs, 32 GiB unless told) and drivers (sandbox unless told). */
export interface HostHello extends Partial<HostSize> {
  drivers?: string[];
  vm_accel?: 'kvm' | 'tcg';
}

/** Connects a host agent (registering a host first when none is given) and waits for its welcome. */
export async function connectHost(
  registered?: RegisteredHost,
  computers: { id: string; state: ActualState }[] = [],
  opts: HostHello = {},
): Promise<HostPeer> {
  const host = registered ?? (await registerHost());
  const ws = await dial(AGENT_HOST_PATH, host.key);
  const inbox = new Inbox<HostServerMessage>();
  listen(ws, HostServerMessage, inbox, `host ${host.id}`);
  ws.send(
    JSON.stringify({
      type: 'hello',
      protocol: PROTOCOL,
      agent_version: 'test-peer',
      drivers: opts.drivers ?? ['sandbox'],
      hostname: 'peer.test',
      cpus: opts.cpus ?? 8,
      memory_mb: opts.memory_mb ?? 32768,
      computers,
      ...(opts.vm_accel && { vm_accel: opts.vm_accel }),
    }),
  );
  const welcome = await inbox.take('welcome', `host ${host.id}`);
  return {
    ...host,
    welcome,
    take: (type) => inbox.take(type, `host ${host.id}`),
    dial: async (id) => new ComputerPeer(id, await dial(agentComputerPath(id), host.key)),
    computer: async (id, opts) => {
      const peer = new ComputerPeer(id, await dial(agentComputerPath(id), host.key));
      await peer.attach(opts.state);
      return peer;
    },
    close: () => close(ws),
  };
}

// ------------------------------------------------------------ computers

const lifecycleDefaults = (peer: ComputerPeer): { [T in ComputerRequestType]: Handler<T> } => ({
  'computer.provision': () => ({ data: { state: 'running' } }),
  'computer.start': () => ({ data: { state: 'running' } }),
  'computer.stop': () => ({ data: { state: 'stopped' } }),
  'computer.destroy': () => ({ data: { state: 'absent' } }),
  'computer.resize': () => ({ data: { state: peer.state } }),
  'computer.env': () => ({ data: { state: peer.state } }),
  'exec.run': () => ({ data: { output: '', exit_code: 0, timed_out: false, truncated: false, duration_ms: 1 } }),
  // A sync exec (the only start with an output limit) runs and exits 0 on a healthy host; other processes run until the test says.
  'proc.start': (req) => {
    if (req.params.output_limit !== undefined) setTimeout(() => peer.exit(req.params.proc_id, 0), 0);
    return { data: { pid: 100 } };
  },
  'proc.attach': () => ({ data: { running: true, exit: null } }),
  'proc.resize': () => ({ data: {} }),
  'proc.signal': () => ({ data: {} }),
  'proc.close_stdin': () => ({ data: {} }),
  'proc.forget': () => ({ data: {} }),
  // A host with an empty disk archive; move tests script real transfers (move-fixtures.ts).
  'computer.export': () => ({ data: { bytes: 0, sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' } }),
  'computer.import': () => ({ data: {} }),
  'computer.import_done': () => ({ data: { state: 'stopped' } }),
  'watch.start': () => ({ data: { unavailable: [] } }),
  'watch.stop': () => ({ data: {} }),
  'computer.snapshot': () => ({ data: { bytes: 1 << 20 } }),
  'computer.snapshot_restore': () => ({ data: { state: 'stopped' } }),
  // An empty disk: file tests script what is there.
  fs: (req) => ({ error: { code: 'NO_SUCH_PATH', message: `No such file or directory: ${'path' in req.request ? req.request.path : req.request.from}` } }),
});

/** What a computer socket gets of a move: disk frames, and the disk.ack / disk.cancel notices. */
export type DiskEvent = ({ type: 'disk.frame' } & DiskFrame) | Extract<ComputerNotice, { type: 'disk.ack' | 'disk.cancel' }>;

export interface Held<T extends ComputerRequestType> {
  /** The request, once the server has sent it. */
  request: Promise<Req<T>>;
  /** Answers it. */
  reply(r: Reply<T>): void;
}

export class ComputerPeer {
  /** What the host has, as this peer last reported it. */
  state: ActualState = 'absent';
  private readonly inbox = new Inbox<ComputerRequest>();
  private readonly handlers = new Map<ComputerRequestType, AnyHandler>();
  private readonly once = new Map<ComputerRequestType, AnyHandler>();
  private readonly defaults = lifecycleDefaults(this);
  /** Stdin received per process, in frame order. */
  private readonly stdin = new Map<string, Uint8Array[]>();
  private readonly stdinAcked = new Map<string, number>();
  /** Offset of the first stdin byte this peer got, per process. */
  private readonly stdinBase = new Map<string, number>();
  private holdingStdinAcks = false;
  private readonly outputOffsets = new Map<string, number>();
  /** Every proc.ack the server sent, in order. */
  readonly acks: z.infer<typeof ProcAck>[] = [];
  /** Every log.follow and log.ack the server sent, in order. */
  readonly logNotices: Extract<ComputerNotice, { type: 'log.follow' | 'log.ack' }>[] = [];
  /** Processes the server said to forget (procs.forget notices), in order. */
  readonly forgets: string[] = [];
  /** Every disk frame and disk notice the server sent, in order. */
  readonly disk: DiskEvent[] = [];
  private readonly diskListeners: ((e: DiskEvent) => void)[] = [];
  /** Sizes of the stdin frames received, in order, with their process. */
  readonly stdinFrames: { proc_id: string; offset: number; bytes: number }[] = [];

  /** Settles with the close code and reason once the server closes this socket. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Relayed streams the object opens on this socket (relay-peer.ts). */
  readonly relay: RelayPeer;

  constructor(
    readonly id: string,
    private readonly ws: WebSocket,
  ) {
    this.relay = new RelayPeer(
      (t) => ws.send(t),
      (b) => ws.send(b),
    );
    this.closed = new Promise((resolve) => ws.addEventListener('close', (ev) => resolve({ code: ev.code, reason: ev.reason })));
    listen(ws, ComputerRequest, this.inbox, `computer ${id}`, (req) => void this.answer(req), {
      binary: (bytes) => this.onBinary(bytes),
      notice: (raw) => {
        if (isRelayMessage(raw)) return this.relay.onMessage(raw);
        const type = (raw as { type?: unknown } | null)?.type;
        if (type !== 'proc.ack' && type !== 'disk.ack' && type !== 'disk.cancel' && type !== 'procs.forget' && type !== 'log.follow' && type !== 'log.ack') return 'not-a-notice';
        const n = ComputerNotice.safeParse(raw);
        if (!n.success) return `malformed notice ${JSON.stringify(raw)}: ${n.error.message}`;
        if (n.data.type === 'proc.ack') this.acks.push(n.data);
        else if (n.data.type === 'procs.forget') this.forgets.push(...n.data.proc_ids);
        else if (n.data.type === 'log.follow' || n.data.type === 'log.ack') this.logNotices.push(n.data);
        else this.onDisk(n.data);
        return null;
      },
    });
  }

  // ---------------------------------------------------------- streamed processes

  /** Sends output of a process as a binary frame, at the next offset of its stream (or at `at`, as a new agent resuming would). */
  output(procId: string, stream: OutputStream, data: Uint8Array | string, at?: number): void {
    const payload = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const key = `${procId}/${stream}`;
    const offset = at ?? this.outputOffsets.get(key) ?? 0;
    this.outputOffsets.set(key, offset + payload.byteLength);
    this.ws.send(encodeFrame({ kind: FRAME_OUTPUT, stream, proc_id: procId, offset, payload }));
  }

  /** Says a process ended. */
  exit(procId: string, exitCode: number, more: Partial<ProcExit> = {}): void {
    this.send({ type: 'proc.exit', proc_id: procId, exit_code: exitCode, signal: null, timed_out: false, duration_ms: 5, ...more });
  }

  /** Stdin offset of the first byte this peer received for a process. */
  stdinStart(procId: string): number {
    return this.stdinBase.get(procId) ?? 0;
  }

  /** All stdin bytes received for a process so far (from stdinStart), each once. */
  stdinOf(procId: string): Uint8Array {
    return join(this.stdin.get(procId) ?? []);
  }

  /** Stdin bytes received for a process and not yet acknowledged with proc.stdin_ack. */
  stdinUnacked(procId: string): number {
    return this.stdinStart(procId) + this.stdinOf(procId).byteLength - (this.stdinAcked.get(procId) ?? this.stdinStart(procId));
  }


  /** While held, stdin frames are not acknowledged (a process that does not read); releasing acknowledges all received. */
  holdStdinAcks(hold: boolean): void {
    this.holdingStdinAcks = hold;
    if (!hold) for (const procId of this.stdin.keys()) this.ackStdin(procId);
  }

  /** Acknowledges all stdin received for a process, as written. */
  ackStdin(procId: string): void {
    const offset = this.stdinStart(procId) + this.stdinOf(procId).byteLength;
    if ((this.stdinAcked.get(procId) ?? this.stdinStart(procId)) === offset) return;
    this.stdinAcked.set(procId, offset);
    this.send({ type: 'proc.stdin_ack', proc_id: procId, offset });
  }

  /** Calls `listener` with every later disk frame and disk notice. */
  onDiskEvent(listener: (e: DiskEvent) => void): void {
    this.diskListeners.push(listener);
  }

  /** Sends raw bytes as one binary message (a disk frame, as a source agent does). */
  sendBinary(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  private onDisk(e: DiskEvent): void {
    this.disk.push(e);
    for (const l of this.diskListeners) l(e);
  }

  private onBinary(bytes: Uint8Array): string | null {
    if (frameKind(bytes) === FRAME_RELAY) return this.relay.onFrame(bytes);
    if (frameKind(bytes) === FRAME_DISK) {
      const d = decodeDiskFrame(bytes);
      if (!d) return `got a malformed disk frame (${bytes.byteLength} bytes)`;
      this.onDisk({ type: 'disk.frame', ...d, payload: d.payload.slice() });
      return null;
    }
    const f = decodeFrame(bytes);
    if (!f || f.kind !== FRAME_STDIN) return `got a binary frame that is not a stdin frame (${bytes.byteLength} bytes)`;
    this.stdinFrames.push({ proc_id: f.proc_id, offset: f.offset, bytes: f.payload.byteLength });
    // Like the guest: bytes before what this process has taken are a resend and are skipped.
    // A peer that has seen none of a process's stdin (a new agent of a running process) starts at the first frame.
    if (!this.stdin.has(f.proc_id)) this.stdinBase.set(f.proc_id, f.offset);
    const have = (this.stdinBase.get(f.proc_id) ?? 0) + this.stdinOf(f.proc_id).byteLength;
    if (f.offset > have) return `stdin frame of ${f.proc_id} at offset ${f.offset}, but only ${have} bytes came before it`;
    const parts = this.stdin.get(f.proc_id) ?? [];
    parts.push(f.payload.slice(have - f.offset));
    this.stdin.set(f.proc_id, parts);
    if (!this.holdingStdinAcks) this.ackStdin(f.proc_id);
    return null;
  }

  /**
   * Says `attached` with what the host has; resolves once the object counts this socket as its agent
   * (or, with `as: 'target'`, as the agent of the host a move is copying the computer to).
   */
  async attach(state: ActualState, opts: { as?: 'link' | 'target'; protocol?: { major: number; minor: number } } = {}): Promise<void> {
    this.state = state;
    this.send({ type: 'attached', computer_id: this.id, protocol: opts.protocol ?? PROTOCOL, agent_version: 'test-peer', state });
    // No message acknowledges `attached`: ask the object itself.
    await this.untilObject((linked) => linked, 'never took the agent socket', opts.as);
  }

  /** Polls the ComputerObject until whether it has an attached agent socket (of `which` link) satisfies `ok`. */
  private async untilObject(ok: (linked: boolean) => boolean, failure: string, which: 'link' | 'target' = 'link'): Promise<void> {
    const stub = env.COMPUTER.get(env.COMPUTER.idFromName(this.id));
    const deadline = Date.now() + WAIT_MS;
    while (!ok(await runInDurableObject(stub, (obj) => obj[which].socket() !== null))) {
      if (Date.now() > deadline) throw new Error(`computer ${this.id}: the object ${failure}`);
      await sleep(10);
    }
  }

  /** Resolves once the server has said the process may be forgotten (a proc.forget request, or from 1.3 a procs.forget notice). */
  async forgotten(procId: string): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    const told = () => this.forgets.includes(procId) || this.inbox.all.some((r) => r.type === 'proc.forget' && r.proc_id === procId);
    while (!told()) {
      if (Date.now() > deadline) throw new Error(`computer ${this.id}: ${procId} was not forgotten within ${WAIT_MS} ms`);
      await sleep(5);
    }
  }

  /** Every request received so far, in order. */
  get requests(): readonly ComputerRequest[] {
    return this.inbox.all;
  }

  /** Answers every later request of this type with `handler`. */
  onRequest<T extends ComputerRequestType>(type: T, handler: Handler<T>): void {
    this.handlers.set(type, handler as unknown as AnyHandler);
  }

  /** Holds the next request of this type unanswered until the test replies. */
  hold<T extends ComputerRequestType>(type: T): Held<T> {
    let reply!: (r: Reply<T>) => void;
    const answer = new Promise<Reply<T>>((resolve) => (reply = resolve));
    let got!: (req: Req<T>) => void;
    const request = new Promise<Req<T>>((resolve) => (got = resolve));
    const handler: Handler<T> = (req) => {
      got(req);
      return answer;
    };
    this.once.set(type, handler as unknown as AnyHandler);
    return { request: withTimeout(request, `computer ${this.id}: held ${type}`), reply };
  }

  /** The next request of this type (each is returned once). */
  take<T extends ComputerRequestType>(type: T): Promise<Req<T>> {
    return this.inbox.take(type, `computer ${this.id}`) as Promise<Req<T>>;
  }

  /** Sends an agent message (metrics, computer.exited, a hand-made result). */
  send(msg: ComputerAgentMessage): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** The agent goes away: the socket closes without a word. Resolves once the object has noticed. */
  async drop(opts: { as?: 'link' | 'target' } = {}): Promise<void> {
    close(this.ws);
    await this.untilObject((linked) => !linked, 'never let go of the agent socket', opts.as);
  }

  private async answer(req: ComputerRequest): Promise<void> {
    const handler = this.once.get(req.type) ?? this.handlers.get(req.type) ?? (this.defaults[req.type] as unknown as AnyHandler);
    this.once.delete(req.type);
    const reply = await handler(req);
    if (reply === 'no-reply') return;
    if ('data' in reply) {
      const data = reply.data as { state?: ActualState };
      if (req.type !== 'exec.run' && data.state) this.state = data.state;
    }
    try {
      this.send('error' in reply ? { type: 'result', id: req.id, ok: false, error: reply.error } : { type: 'result', id: req.id, ok: true, data: reply.data });
    } catch {
      /* the socket went away while the reply was held */
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function withTimeout<T>(p: Promise<T>, label: string): Promise<T> {
  return Promise.race([p, sleep(WAIT_MS).then(() => Promise.reject<T>(new Error(`${label}: nothing within ${WAIT_MS} ms`)))]);
}
