/**
 * Host side of the guest protocol: one persistent connection to a computer's
 * guest agent, multiplexing requests (by id) and process events (by proc id).
 * Every frame from the guest is validated: the guest runs inside the computer,
 * where root belongs to the customer.
 */
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import {
  GUEST_PROTOCOL,
  GUEST_RESPONSES,
  GuestFrameHeader,
  GuestHello,
  type ComputerEvent,
  type ExecResponse,
  type GuestErrorCode,
  type GuestOp,
  type GuestRequestBody,
  type ProcInfo,
  type StreamName,
  type TcpEvent,
} from '../schema/guest.ts';
import { FrameDecoder, FrameTooLarge, encodeFrame, type RawFrame } from './guest-frames.ts';
import { GuestProcess, type GuestLink } from './guest-process.ts';

export type GuestHelloInfo = z.infer<typeof GuestHello>;
type ResponseData<Op extends GuestOp> = z.infer<(typeof GUEST_RESPONSES)[Op]>;
type RequestOf<Op extends GuestOp> = Extract<GuestRequestBody, { op: Op }>;

/**
 * A failed guest request: the guest's own code, or what went wrong on the way.
 * The message is always the host's own words: the guest runs where the
 * tenant is root, so what it says is kept apart (`guestText`, for the
 * agent's log) and never passed on to API clients.
 */
export class GuestError extends Error {
  readonly code: GuestErrorCode | 'DISCONNECTED' | 'TIMEOUT' | 'PROTOCOL';
  /** What the guest itself said, when it was the guest that refused. */
  guestText?: string;
  constructor(code: GuestError['code'], message: string) {
    super(message);
    this.code = code;
  }

  /** The guest refused `op` with `code`, saying `text`. */
  static fromGuest(op: GuestOp, code: GuestErrorCode, text: string): GuestError {
    const e = new GuestError(code, refusal(op, code));
    e.guestText = text.slice(0, 2000);
    return e;
  }
}

/** What a refusal of the guest means, in the host's words. */
function refusal(op: GuestOp, code: GuestErrorCode): string {
  switch (code) {
    case 'NOT_FOUND':
      return 'the process is not known to the computer (it ended and was forgotten, or never started)';
    case 'BUSY':
      return 'the process is not taking input fast enough; send more once it has read what it has';
    case 'BAD_REQUEST':
      return op === 'spawn' || op === 'exec'
        ? 'the computer could not start the command: a program, shell or working directory it names does not exist or cannot be run'
        : `the computer's agent refused the ${op} request`;
    case 'FAILED':
      return `the computer's agent could not complete the ${op} request`;
    case 'REFUSED':
      return 'nothing accepted the connection in the computer';
    case 'TIMEOUT':
      return `the computer's agent did not complete the ${op} request in time`;
    // What a path said (fs, file_open); the object names the path it asked about.
    case 'NO_SUCH_PATH':
      return 'no such file or directory';
    case 'FORBIDDEN':
      return 'permission denied';
    case 'CONFLICT':
      return 'the path is in the way (a directory where a file is expected or the reverse, a path that exists, or a directory that is not empty)';
    case 'NO_SPACE':
      return "no space left on the computer's disk";
  }
}

interface Pending {
  op: GuestOp;
  resolve: (r: { data: unknown; payload: Buffer }) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
  /** Runs as the successful reply is read, before any frame behind it. */
  onReply?: () => void;
}

export interface SpawnOptions {
  /** The process id to use (unique in the guest); random when absent. */
  proc?: string;
  command?: string;
  argv?: string[];
  shell?: string;
  /** false: stdin is /dev/null. */
  stdin?: boolean;
  /** Output flow control window per stream; acknowledge with GuestProcess.ack(). */
  window?: number;
  pty?: { rows: number; cols: number };
  cwd?: string;
  env?: Record<string, string>;
  user?: 'user' | 'root';
  timeout_s?: number;
  ring_bytes?: number;
  /** Bytes of each stream sent at most; the rest is dropped and the exit says truncated (guest 1.2). */
  output_limit?: number;
}

export class GuestClient extends EventEmitter<{ close: [Error | undefined]; watch: [watchId: string, events: ComputerEvent[]] }> implements GuestLink {
  readonly hello: GuestHelloInfo;
  private readonly socket: net.Socket;
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private readonly procs = new Map<string, GuestProcess>();
  /** Listeners of the relay's TCP connections (relay/guest-tcp.ts), by connection id. */
  private readonly tcp = new Map<string, (event: TcpEvent, payload: Buffer) => void>();
  private nextId = 1;
  private closedWith: Error | undefined | null = null;

  private constructor(socket: net.Socket, hello: GuestHelloInfo, decoder: FrameDecoder, early: RawFrame[]) {
    super();
    this.socket = socket;
    this.hello = hello;
    this.decoder = decoder;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.shutdown(err));
    socket.on('close', () => this.shutdown(undefined));
    this.handleFrames(early);
  }

  /**
   * Connects to a guest socket and waits for its hello. With `bootId`, a guest
   * presenting another boot id is refused: the socket path lies in a directory
   * the computer's root can write, so it could lead to a different guest.
   */
  static connect(path: string, opts: { timeoutMs?: number; bootId?: string } = {}): Promise<GuestClient> {
    if (Buffer.byteLength(path) > 107) {
      return Promise.reject(new GuestError('PROTOCOL', `guest socket path too long for a unix socket: ${path}`));
    }
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      const decoder = new FrameDecoder();
      const timer = setTimeout(() => fail(new GuestError('TIMEOUT', 'guest did not say hello')), opts.timeoutMs ?? 5000);
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const onClose = () => fail(new GuestError('DISCONNECTED', 'guest closed the connection before its hello'));
      socket.on('error', fail);
      socket.on('close', onClose);
      const onHello = (chunk: Buffer) => {
        try {
          const frames = decoder.push(chunk);
          if (frames.length === 0) return; // the hello is split across reads
          clearTimeout(timer);
          socket.off('data', onHello);
          socket.off('error', fail);
          socket.off('close', onClose);
          const hello = GuestHello.safeParse(frames[0].header);
          if (!hello.success) throw new GuestError('PROTOCOL', 'guest did not start with a valid hello');
          if (hello.data.protocol.major !== GUEST_PROTOCOL.major) {
            throw new GuestError('PROTOCOL', `guest speaks protocol ${hello.data.protocol.major}.x, host ${GUEST_PROTOCOL.major}.x`);
          }
          if (opts.bootId !== undefined && hello.data.boot_id !== opts.bootId) {
            throw new GuestError('PROTOCOL', 'the guest socket answered with another boot id: not this computer\'s guest');
          }
          socket.setNoDelay(true);
          resolve(new GuestClient(socket, hello.data, decoder, frames.slice(1)));
        } catch (err) {
          fail(err instanceof Error ? err : new Error(String(err)));
        }
      };
      socket.on('data', onHello);
    });
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Sends one request; resolves with the validated response data and payload. */
  async request<Op extends GuestOp>(
    body: RequestOf<Op>,
    opts: { payload?: Uint8Array; timeoutMs?: number; onReply?: () => void } = {},
  ): Promise<{ data: ResponseData<Op>; payload: Buffer }> {
    if (this.closedWith !== null) throw new GuestError('DISCONNECTED', 'guest connection is closed');
    const id = this.nextId++;
    // Encoded before anything waits for a reply: a request too large to send fails here, alone,
    // and leaves no pending reply behind to be rejected later with nobody listening.
    let bufs: Buffer[];
    try {
      bufs = encodeFrame({ t: 'req', id, ...body }, opts.payload);
    } catch (err) {
      if (err instanceof FrameTooLarge) throw new GuestError('BAD_REQUEST', `the ${body.op} request is too large for the computer's agent: ${err.message}`);
      throw err;
    }
    const reply = new Promise<{ data: unknown; payload: Buffer }>((resolve, reject) => {
      const pending: Pending = { op: body.op, resolve, reject, onReply: opts.onReply };
      if (opts.timeoutMs) {
        pending.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new GuestError('TIMEOUT', `guest did not answer ${body.op} within ${opts.timeoutMs} ms`));
        }, opts.timeoutMs);
      }
      this.pending.set(id, pending);
    });
    if (bufs.length === 1) this.socket.write(bufs[0]);
    else {
      this.socket.cork();
      for (const b of bufs) this.socket.write(b);
      this.socket.uncork();
    }
    const { data, payload } = await reply;
    const parsed = GUEST_RESPONSES[body.op].safeParse(data);
    if (!parsed.success) throw new GuestError('PROTOCOL', `guest sent a malformed ${body.op} response`);
    return { data: parsed.data as ResponseData<Op>, payload };
  }

  ping(timeoutMs = 2000): Promise<{ data: ResponseData<'ping'> }> {
    return this.request({ op: 'ping' }, { timeoutMs });
  }

  async setEnv(env: Record<string, string>): Promise<void> {
    await this.request({ op: 'setenv', env }, { timeoutMs: 10_000 });
  }

  /** Runs a command to completion; output is stdout and stderr combined, as raw bytes. */
  async exec(params: Omit<RequestOf<'exec'>, 'op' | 'stdin'>, stdin?: Uint8Array): Promise<{ result: ExecResponse; output: Buffer }> {
    // The guest enforces the timeout; ours only guards against a guest that stopped answering.
    const { data, payload } = await this.request(
      { op: 'exec', ...params, ...(stdin ? { stdin: true } : {}) },
      { timeoutMs: (params.timeout_s + 15) * 1000, payload: stdin },
    );
    return { result: data, output: payload };
  }

  /**
   * Starts a process and returns its handle at once, so listeners attached
   * right away see every byte; `started` resolves with the pid.
   */
  spawn(opts: SpawnOptions): GuestProcess {
    const { proc = `h${randomBytes(6).toString('hex')}`, ...rest } = opts;
    const handle = this.track(new GuestProcess(this, proc, {}));
    handle.bindStart(
      this.request({ op: 'spawn', proc, ...rest }, { timeoutMs: 30_000 }).then(({ data }) => ({ pid: data.pid })),
    );
    return handle;
  }

  /** Processes the guest knows about (running, and recently exited ones not yet forgotten). */
  async list(): Promise<ProcInfo[]> {
    const { data } = await this.request({ op: 'list' }, { timeoutMs: 10_000 });
    return data.procs;
  }

  /** Re-subscribes to a process, replaying buffered output from `offsets` (per stream; default 0). */
  attach(proc: string, offsets: Partial<Record<StreamName, number>> = {}, opts: { window?: number } = {}): GuestProcess {
    const handle = new GuestProcess(this, proc, offsets);
    // Events before the reply come from an earlier subscription of this connection and may run
    // ahead of `offsets`; the replay right behind the reply has them all, so the handle starts there.
    const onReply = () => this.track(handle);
    handle.bindStart(
      this.request({ op: 'attach', proc, offsets, ...opts }, { timeoutMs: 10_000, onReply }).then(({ data }) => {
        handle.noteInfo(data);
        return { pid: data.pid };
      }),
    );
    return handle;
  }

  /** Closes the connection; processes inside keep running. */
  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  /** Routes a TCP connection's events to `listener` until untrackTcp (relay/guest-tcp.ts). */
  trackTcp(conn: string, listener: (event: TcpEvent, payload: Buffer) => void): void {
    this.tcp.set(conn, listener);
  }

  untrackTcp(conn: string): void {
    this.tcp.delete(conn);
  }

  /** @internal used by GuestProcess when it is detached or forgotten. */
  untrack(proc: string): void {
    this.procs.delete(proc);
  }

  private track(handle: GuestProcess): GuestProcess {
    this.procs.get(handle.id)?.markDetached();
    this.procs.set(handle.id, handle);
    return handle;
  }

  private onData(chunk: Buffer): void {
    let frames;
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.socket.destroy(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.handleFrames(frames);
  }

  private handleFrames(frames: RawFrame[]): void {
    for (const frame of frames) {
      const parsed = GuestFrameHeader.safeParse(frame.header);
      if (!parsed.success) {
        this.socket.destroy(new GuestError('PROTOCOL', 'guest sent a malformed frame'));
        return;
      }
      const h = parsed.data;
      if (h.t === 'hello') {
        // A second hello on one connection: the guest agent started again behind a channel that
        // stayed open (a VM's virtio-serial port), so nothing pending will be answered.
        this.socket.destroy(new GuestError('DISCONNECTED', 'the guest agent restarted'));
        return;
      }
      if (h.t === 'res') {
        const pending = this.pending.get(h.id);
        if (!pending) continue; // timed out already
        this.pending.delete(h.id);
        clearTimeout(pending.timer);
        if (h.ok) {
          pending.onReply?.();
          pending.resolve({ data: h.data, payload: frame.payload });
        } else pending.reject(GuestError.fromGuest(pending.op, h.error.code, h.error.message));
      } else if (h.t === 'evt' && h.ev === 'watch') {
        this.emit('watch', h.watch, h.events);
      } else if (h.t === 'evt' && (h.ev === 'tcp_data' || h.ev === 'tcp_end' || h.ev === 'tcp_closed')) {
        this.tcp.get(h.conn)?.(h, frame.payload);
      } else if (h.t === 'evt') {
        const proc = this.procs.get(h.proc);
        if (!proc) continue;
        if (h.ev === 'output') proc.handleOutput(h.stream, h.offset, frame.payload);
        else proc.handleExit({ exit_code: h.exit_code, signal: h.signal, timed_out: h.timed_out, duration_ms: h.duration_ms, truncated: h.truncated });
      }
    }
  }

  private shutdown(err: Error | undefined): void {
    if (this.closedWith !== null) return;
    this.closedWith = err;
    const reason = new GuestError('DISCONNECTED', `guest connection closed${err ? `: ${err.message}` : ''}`);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(reason);
    }
    this.pending.clear();
    for (const proc of this.procs.values()) proc.markDetached();
    this.procs.clear();
    const lost = `the connection to the computer's guest was lost${err ? `: ${err.message}` : ''}`;
    for (const listener of [...this.tcp.values()]) listener({ t: 'evt', ev: 'tcp_closed', conn: '', error: lost }, Buffer.alloc(0));
    this.tcp.clear();
    this.socket.destroy();
    this.emit('close', err);
  }
}
