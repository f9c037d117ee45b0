/**
 * A process on the machine itself (host mode), shaped as the relay wants a
 * streamed process (drivers/driver.ts StreamProcess), in plain Node so it
 * runs wherever Node ≥ 20 does:
 *  - output per stream with byte offsets, never read more than `window`
 *    bytes past what the server acknowledged — while the server is away too,
 *    so nothing is lost: the process waits on its pipe until the server is
 *    back and re-attaches from the offsets it holds;
 *  - stdin written in order, a resent write skipping what was taken;
 *  - signals to its whole process group, SIGTERM followed by SIGKILL of
 *    whatever is left of the group after KILL_GRACE_MS (a cancelled or timed
 *    out job leaves nothing behind in its group); a timeout exits 124.
 * A PTY is made by the caller (pty.ts) and shows here as the one `pty` stream.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import os from 'node:os';
import type { Readable } from 'node:stream';
import type { OutputStream, StreamOffsets } from '../../schema/protocol.ts';
import { DriverError, type StreamExit, type StreamProcess } from '../drivers/driver.ts';

export const KILL_GRACE_MS = 2_000;
/** After the process exits, its pipes get this long to end (a background child may hold them open). */
const EOF_GRACE_MS = 100;
const TIMED_OUT_EXIT = 124;

/** One output stream: the bytes not yet acknowledged, and where the last emit got to. */
interface Outbuf {
  name: OutputStream;
  chunks: Buffer[];
  /** Offset of chunks[0]. */
  start: number;
  end: number;
  acked: number;
  /** Next offset to emit to a listener. */
  sent: number;
  sources: Readable[];
  open: number;
  paused: boolean;
}

export interface LocalSpawn {
  /** Run as is (no shell), or `command` through the platform's shell. */
  argv?: string[];
  command?: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  stdin: boolean;
  /** The process's output is one terminal stream (it is `script` making a PTY). */
  pty: boolean;
  timeout_s?: number;
  window: number;
  /** Resizes the terminal of a PTY process. */
  resize?: (rows: number, cols: number) => Promise<void>;
  /** Runs once the process has exited and its output ended. */
  cleanup?: () => void;
  /** The owner dropped the process (forget). */
  onForget?: () => void;
}

type Events = {
  output: [stream: OutputStream, data: Buffer, offset: number];
  gap: [stream: OutputStream, from: number, to: number];
  exit: [exit: StreamExit];
  detached: [];
};

export class LocalProcess extends EventEmitter<Events> implements StreamProcess {
  readonly pid: number;
  exit: StreamExit | null = null;
  endedAt: number | null = null;
  private readonly child: ChildProcess;
  private readonly bufs: Outbuf[];
  private readonly window: number;
  private readonly opts: LocalSpawn;
  private exitSent = false;
  private timedOut = false;
  private status: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private stdinTaken = 0;
  private stdinClosed: boolean;
  private timeoutTimer: NodeJS.Timeout | null = null;
  private eofTimer: NodeJS.Timeout | null = null;

  private constructor(child: ChildProcess, opts: LocalSpawn) {
    super();
    this.child = child;
    this.pid = child.pid!;
    this.opts = opts;
    this.window = opts.window;
    this.stdinClosed = !opts.stdin;
    const out = (name: OutputStream, sources: (Readable | null)[]): Outbuf => {
      const list = sources.filter((s): s is Readable => s !== null);
      return { name, chunks: [], start: 0, end: 0, acked: 0, sent: 0, sources: list, open: list.length, paused: false };
    };
    this.bufs = opts.pty ? [out('pty', [child.stdout, child.stderr])] : [out('stdout', [child.stdout]), out('stderr', [child.stderr])];
    for (const buf of this.bufs) {
      for (const src of buf.sources) {
        src.on('data', (chunk: Buffer) => this.onData(buf, chunk));
        src.once('close', () => {
          buf.open--;
          if (this.bufs.every((b) => b.open === 0)) this.finish();
        });
        src.on('error', () => {});
      }
    }
    child.stdin?.on('error', () => {});
    child.once('exit', (code, signal) => {
      this.status = { code, signal };
      if (this.timeoutTimer) clearTimeout(this.timeoutTimer);
      if (this.bufs.every((b) => b.open === 0)) this.finish();
      else this.finishSoon();
    });
    if (opts.timeout_s) {
      this.timeoutTimer = later(opts.timeout_s * 1000, () => {
        if (this.status) return;
        this.timedOut = true;
        void this.signal(os.constants.signals.SIGTERM, true);
      });
    }
  }

  /** Starts the process; resolves once it runs, rejects (BAD_REQUEST) when it cannot start. */
  static start(opts: LocalSpawn): Promise<LocalProcess> {
    const child = opts.argv
      ? spawn(opts.argv[0], opts.argv.slice(1), { cwd: opts.cwd, env: opts.env, detached: true, stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] })
      : spawn(opts.command ?? '', { cwd: opts.cwd, env: opts.env, detached: true, shell: true, stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    return new Promise((resolve, reject) => {
      child.once('spawn', () => resolve(new LocalProcess(child, opts)));
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (child.pid !== undefined) return; // a later error (a failed kill) of a process that runs
        opts.cleanup?.();
        const what = opts.argv ? opts.argv[0] : 'the shell';
        reject(new DriverError('BAD_REQUEST', err.code === 'ENOENT' ? `no such file or directory: ${what}` : `${what}: ${err.message}`));
      });
    });
  }

  get running(): boolean {
    return this.exit === null;
  }

  // ------------------------------------------------------------ output

  private onData(buf: Outbuf, chunk: Buffer): void {
    buf.chunks.push(chunk);
    buf.end += chunk.length;
    if (buf.end - buf.acked >= this.window) this.setPaused(buf, true);
    this.pump();
  }

  private setPaused(buf: Outbuf, paused: boolean): void {
    if (buf.paused === paused) return;
    buf.paused = paused;
    for (const src of buf.sources) {
      if (paused) src.pause();
      else src.resume();
    }
  }

  /** Emits what listeners have not had, in pieces as read, then the exit once all output is out. */
  private pump(): void {
    if (this.listenerCount('output') === 0) return;
    for (const buf of this.bufs) {
      let at = buf.start;
      for (const chunk of buf.chunks) {
        const stop = at + chunk.length;
        if (stop > buf.sent) {
          const from = Math.max(buf.sent, at);
          this.emit('output', buf.name, from === at ? chunk : chunk.subarray(from - at), from);
          buf.sent = stop;
        }
        at = stop;
      }
    }
    if (this.exit && !this.exitSent) {
      this.exitSent = true;
      this.emit('exit', this.exit);
    }
  }

  async ack(offsets: StreamOffsets): Promise<void> {
    for (const buf of this.bufs) {
      const o = offsets[buf.name];
      if (o === undefined) continue;
      buf.acked = Math.max(buf.acked, Math.min(o, buf.end));
      while (buf.chunks.length && buf.start + buf.chunks[0].length <= buf.acked) buf.start += buf.chunks.shift()!.length;
      if (buf.end - buf.acked < this.window && buf.paused) {
        this.setPaused(buf, false);
        if (this.status) this.finishSoon();
      }
    }
  }

  /**
   * Re-subscribes from the server's offsets (after its connection dropped):
   * the caller wires its listeners, then everything from there is emitted, and
   * the exit if the process has ended.
   */
  replayFrom(offsets: StreamOffsets): void {
    for (const buf of this.bufs) {
      const want = offsets[buf.name] ?? 0;
      if (want < buf.start) this.emit('gap', buf.name, want, buf.start);
      buf.sent = Math.min(Math.max(want, buf.start), buf.end);
    }
    this.exitSent = false;
    setImmediate(() => this.pump());
  }

  /**
   * The process exited and its pipes have not ended: a background child may
   * hold them. They get EOF_GRACE_MS (counted again whenever reading resumes
   * after the server caught up); then what is still read is no longer this
   * process's output.
   */
  private finishSoon(): void {
    if (this.eofTimer) clearTimeout(this.eofTimer);
    this.eofTimer = later(EOF_GRACE_MS, () => {
      this.eofTimer = null;
      if (this.exit || this.bufs.some((b) => b.paused)) return;
      for (const buf of this.bufs) for (const src of buf.sources) src.destroy();
      this.finish();
    });
  }

  private finish(): void {
    if (!this.status || this.exit) return;
    if (this.eofTimer) clearTimeout(this.eofTimer);
    const { code, signal } = this.status;
    const signum = signal ? (os.constants.signals[signal] ?? null) : null;
    this.exit = {
      exit_code: this.timedOut ? TIMED_OUT_EXIT : (code ?? (signum !== null ? 128 + signum : 1)),
      signal: signum,
      timed_out: this.timedOut,
    };
    this.endedAt = Date.now();
    this.opts.cleanup?.();
    this.pump();
  }

  // ------------------------------------------------------------ input and control

  write(data: Uint8Array, offset?: number): Promise<void> {
    const stdin = this.child.stdin;
    if (!stdin || this.stdinClosed) return Promise.reject(new DriverError('BAD_REQUEST', 'stdin is closed'));
    let bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (offset !== undefined) {
      if (offset > this.stdinTaken) return Promise.reject(new DriverError('BAD_REQUEST', `stdin from offset ${offset}, but only ${this.stdinTaken} bytes came before it`));
      bytes = bytes.subarray(this.stdinTaken - offset);
    }
    if (bytes.length === 0) return Promise.resolve();
    this.stdinTaken += bytes.length;
    return new Promise((resolve, reject) => stdin.write(bytes, (err) => (err ? reject(new DriverError('FAILED', `stdin write failed: ${err.message}`)) : resolve())));
  }

  async closeStdin(): Promise<void> {
    if (this.stdinClosed) return;
    // A terminal has no stdin of its own to close: it gets the EOF character.
    if (this.opts.pty) return this.write(Buffer.from([4]));
    this.stdinClosed = true;
    this.child.stdin?.end();
  }

  async resize(rows: number, cols: number): Promise<void> {
    if (!this.opts.resize) throw new DriverError('BAD_REQUEST', 'process has no terminal');
    if (this.running) await this.opts.resize(rows, cols);
  }

  /** Signals the process, or its whole group; a group SIGTERM is followed by SIGKILL of what is left of the group. */
  async signal(signal: number, group = false): Promise<void> {
    if (!this.running && !group) return;
    this.kill(signal, group);
    if (group && signal === os.constants.signals.SIGTERM) {
      later(KILL_GRACE_MS, () => {
        if (this.groupAlive()) this.kill(os.constants.signals.SIGKILL, true);
      });
    }
  }

  private kill(signal: number, group: boolean): void {
    try {
      // Windows has no process groups: the process itself is all we can reach.
      if (group && process.platform !== 'win32') process.kill(-this.pid, signal);
      else this.child.kill(signal);
    } catch {
      /* already gone */
    }
  }

  /** Some process of the group still exists. */
  groupAlive(): boolean {
    if (process.platform === 'win32') return this.running;
    try {
      process.kill(-this.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  async detach(): Promise<void> {
    this.removeAllListeners();
  }

  /** The owner drops it; a process still running is ended (group SIGKILL). */
  async forget(): Promise<void> {
    this.removeAllListeners();
    if (this.running) this.kill(os.constants.signals.SIGKILL, true);
    this.opts.onForget?.();
  }
}

/** A timer that never keeps the agent alive by itself. */
function later(ms: number, fn: () => void): NodeJS.Timeout {
  const t = setTimeout(fn, ms);
  t.unref();
  return t;
}
