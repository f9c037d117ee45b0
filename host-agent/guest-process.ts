/**
 * Handle of a process spawned in (or re-attached to inside) a computer:
 * ordered output with byte offsets for gap-free resume, flow-controlled stdin,
 * terminal resize, signals and the exit.
 */
import { EventEmitter } from 'node:events';
import type { ExitInfo, GuestOp, GuestRequestBody, ProcInfo, StreamName } from '../schema/guest.ts';

/** What a process handle needs of its connection. */
export interface GuestLink {
  request<Op extends GuestOp>(
    body: Extract<GuestRequestBody, { op: Op }>,
    opts?: { payload?: Uint8Array; timeoutMs?: number },
  ): Promise<{ data: unknown; payload: Buffer }>;
  untrack(proc: string): void;
}

/** Stdin is sent in chunks of this size, with at most WINDOW bytes unacknowledged by the guest. */
const STDIN_CHUNK = 64 * 1024;
const STDIN_WINDOW = 512 * 1024;

export interface GuestProcessEvents {
  /** New bytes of a stream, starting at `offset` (bytes already delivered are never repeated). */
  output: [stream: StreamName, data: Buffer, offset: number];
  /** Bytes from..to of a stream were dropped from the guest's ring before this handle saw them. */
  gap: [stream: StreamName, from: number, to: number];
  exit: [exit: ExitInfo];
  /** The connection dropped; re-attach on a new connection with `offsets`. */
  detached: [];
}

export class GuestProcess extends EventEmitter<GuestProcessEvents> {
  readonly id: string;
  pid = 0;
  exit: ExitInfo | null = null;
  /** Next expected byte of each stream: pass these to attach() to resume without gaps or repeats. */
  readonly offsets: Partial<Record<StreamName, number>>;
  /**
   * Resolves with the pid once the guest confirmed the spawn/attach; rejects if it refused.
   * Events are held until the turn after it resolves: the guest sends a re-attach's replay
   * right behind its reply, and a caller that awaits `started` before listening must not miss it.
   */
  readonly started: Promise<{ pid: number }>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<ExitInfo>;
  private readonly link: GuestLink;
  private resolveStarted!: (v: { pid: number }) => void;
  private rejectStarted!: (e: Error) => void;
  private resolveExited!: (e: ExitInfo) => void;
  private inflight = 0;
  private creditWaiters: Array<() => void> = [];
  private sendChain: Promise<void> = Promise.resolve();
  private detachedFlag = false;
  /** Events that came before the caller could listen (null once released). */
  private held: Array<() => void> | null = [];

  constructor(link: GuestLink, id: string, offsets: Partial<Record<StreamName, number>>) {
    super();
    this.link = link;
    this.id = id;
    this.offsets = { ...offsets };
    this.started = new Promise((resolve, reject) => {
      this.resolveStarted = resolve;
      this.rejectStarted = reject;
    });
    this.exited = new Promise((resolve) => {
      this.resolveExited = resolve;
    });
    // Nobody has to await `started` for a refusal not to crash the process.
    this.started.catch(() => undefined);
  }

  /** @internal */
  bindStart(p: Promise<{ pid: number }>): void {
    p.then(
      (v) => {
        this.pid = v.pid;
        this.resolveStarted(v);
        // After every microtask, so whoever awaited `started` has attached its listeners.
        setImmediate(() => this.release());
      },
      (err: Error) => {
        this.held = null;
        this.link.untrack(this.id);
        this.rejectStarted(err);
      },
    );
  }

  /** @internal attach() learns the pid and whether the process already exited. */
  noteInfo(info: ProcInfo): void {
    this.pid = info.pid;
  }

  /** @internal */
  handleOutput(stream: StreamName, offset: number, data: Buffer): void {
    const expected = this.offsets[stream] ?? 0;
    const end = offset + data.length;
    if (end <= expected) return; // already delivered (replay overlap)
    const fresh = offset < expected ? data.subarray(expected - offset) : data;
    this.offsets[stream] = end;
    if (offset > expected) this.deliver(() => this.emit('gap', stream, expected, offset));
    this.deliver(() => this.emit('output', stream, fresh, Math.max(offset, expected)));
  }

  /** @internal */
  handleExit(exit: ExitInfo): void {
    this.deliver(() => {
      if (this.exit) return;
      this.exit = exit;
      this.resolveExited(exit);
      this.emit('exit', exit);
    });
  }

  private deliver(event: () => void): void {
    if (this.held) this.held.push(event);
    else event();
  }

  private release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const event of held) event();
  }

  /** @internal the connection closed. */
  markDetached(): void {
    if (this.detachedFlag) return;
    this.detachedFlag = true;
    for (const w of this.creditWaiters.splice(0)) w();
    this.emit('detached');
  }

  /**
   * Writes to the process's stdin (or terminal). Resolves once the guest wrote
   * every byte into the process; a large write never holds more than a window
   * of unacknowledged bytes in flight, so memory stays bounded on both ends.
   * With `offset` (where these bytes start in the process's stdin) the guest
   * skips what it already took, so a write resent after a lost answer is not
   * written twice.
   */
  write(data: Uint8Array | string, offset?: number): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.length === 0) return this.sendChain;
    const acks: Promise<unknown>[] = [];
    let failed = false;
    const sent = this.sendChain.then(async () => {
      for (let i = 0; i < bytes.length && !failed; i += STDIN_CHUNK) {
        const chunk = bytes.subarray(i, i + STDIN_CHUNK);
        while (this.inflight + chunk.length > STDIN_WINDOW && this.inflight > 0 && !this.detachedFlag && !failed) {
          await new Promise<void>((r) => this.creditWaiters.push(r));
        }
        if (failed) break;
        this.inflight += chunk.length;
        const header = offset === undefined ? { op: 'stdin' as const, proc: this.id } : { op: 'stdin' as const, proc: this.id, offset: offset + i };
        const ack = this.link.request(header, { payload: chunk }).finally(() => {
          this.inflight -= chunk.length;
          const waiters = this.creditWaiters.splice(0);
          for (const w of waiters) w();
        });
        // Observed at once: a refusal stops the remaining chunks and is reported through Promise.all below.
        ack.catch(() => {
          failed = true;
        });
        acks.push(ack);
      }
    });
    // Later writes queue behind this one's sending (not its acknowledgements), keeping order.
    this.sendChain = sent.catch(() => undefined);
    return sent.then(() => Promise.all(acks)).then(() => undefined);
  }

  /** Closes stdin after pending writes (a terminal gets ^D). */
  async closeStdin(): Promise<void> {
    await this.sendChain;
    await this.link.request({ op: 'close_stdin', proc: this.id }, { timeoutMs: 10_000 });
  }

  async resize(rows: number, cols: number): Promise<void> {
    await this.link.request({ op: 'resize', proc: this.id, rows, cols }, { timeoutMs: 10_000 });
  }

  /** Sends a signal to the process, or to its whole process group. */
  async signal(signal: number, group = false): Promise<void> {
    await this.link.request({ op: 'signal', proc: this.id, signal, group }, { timeoutMs: 10_000 });
  }

  /** Tells the guest the output up to these offsets is consumed, opening the window (spawn/attach `window`). */
  async ack(offsets: Partial<Record<StreamName, number>> = this.offsets): Promise<void> {
    await this.link.request({ op: 'ack', proc: this.id, offsets: { ...offsets } }, { timeoutMs: 10_000 });
  }

  /** Stops receiving events; the process keeps running. */
  async detach(): Promise<void> {
    this.link.untrack(this.id);
    await this.link.request({ op: 'detach', proc: this.id }, { timeoutMs: 10_000 });
  }

  /** Drops an exited process from the guest's table. */
  async forget(): Promise<void> {
    this.link.untrack(this.id);
    await this.link.request({ op: 'forget', proc: this.id }, { timeoutMs: 10_000 });
  }
}
