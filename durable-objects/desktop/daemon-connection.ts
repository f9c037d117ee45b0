/**
 * One connection to the desktop daemon inside a computer, over a relayed TCP
 * stream: waits for the daemon's hello, then sends requests and matches each
 * answer (and its PNG payload) by id. The daemon answers one connection's
 * requests in order, so one connection is one lane; desktop-daemon.ts keeps
 * a few.
 */
import { Buffer } from 'node:buffer';
import { fail, ok, type Result } from '../../schema/errors.ts';
import {
  DAEMON_RESULTS,
  DESKTOP_MAX_HEADER_BYTES,
  DESKTOP_MAX_PAYLOAD_BYTES,
  DESKTOP_PROTOCOL,
  DaemonHello,
  DaemonResponse,
  type DaemonOp,
} from '../../schema/desktop.ts';
import { LengthPrefixedDecoder, encodeFrame, type FrameLimits } from '../../schema/frames.ts';

const LIMITS: FrameLimits = { maxHeader: DESKTOP_MAX_HEADER_BYTES, maxPayload: DESKTOP_MAX_PAYLOAD_BYTES };
const HELLO_TIMEOUT_MS = 10_000;

/** The part of a relayed stream a connection uses (durable-objects/relay/relay-stream.ts). */
export interface DaemonStream {
  readonly accepted: Promise<unknown>;
  readonly done: Promise<unknown>;
  attach(sink: { data(payload: Uint8Array, flags: number): void; end(): void }): void;
  write(bytes: Uint8Array): Promise<boolean>;
  consumed(n: number): void;
  closeWrite(): void;
  reset(code: 'closed', message: string): void;
}

/** A daemon's answer: the op's data, and the PNG for screenshots (or an action that asked for one). */
export interface DaemonAnswer<D = Record<string, unknown>> {
  data: D;
  payload: Uint8Array;
}

/** How the daemon refused: its code, its message, and how long to wait when it is still starting. */
export interface DaemonRefusal {
  code: 'BAD_REQUEST' | 'NOT_READY' | 'NOT_FOUND' | 'FAILED' | 'GONE';
  message: string;
  retry_after?: number;
}

type Pending = { op: DaemonOp; resolve: (r: DaemonReply) => void; timer: ReturnType<typeof setTimeout> };
export type DaemonReply = { ok: true; answer: DaemonAnswer } | { ok: false; refusal: DaemonRefusal };

export class DaemonConnection {
  private readonly decoder = new LengthPrefixedDecoder(LIMITS);
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private closed: string | null = null;
  private helloSeen = false;
  private readonly hello: Promise<Result<true>>;
  private settleHello!: (r: Result<true>) => void;
  /** Requests sent and not yet answered: the lane is busy while there are any. */
  get inFlight(): number {
    return this.pending.size;
  }
  lastUsed = Date.now();

  private readonly stream: DaemonStream;

  constructor(stream: DaemonStream) {
    this.stream = stream;
    this.hello = new Promise((r) => (this.settleHello = r));
    const timer = setTimeout(() => this.shut('the desktop daemon did not greet in time'), HELLO_TIMEOUT_MS);
    void this.hello.then(() => clearTimeout(timer));
    stream.attach({
      data: (payload) => {
        this.stream.consumed(payload.byteLength);
        this.onBytes(payload);
      },
      end: () => this.shut('the desktop daemon closed the connection'),
    });
    void stream.done.then(() => this.shut('the connection to the desktop daemon ended'));
  }

  get usable(): boolean {
    return this.closed === null;
  }

  /** Resolves once the daemon said hello in a protocol this object speaks. */
  ready(): Promise<Result<true>> {
    return this.hello;
  }

  request(op: DaemonOp, args: Record<string, unknown>, timeoutMs: number): Promise<DaemonReply> {
    if (this.closed) return Promise.resolve({ ok: false, refusal: { code: 'GONE', message: this.closed } });
    const id = ++this.seq;
    this.lastUsed = Date.now();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        // An answer that never comes leaves the lane in an unknown state: end it.
        this.shut(`the desktop daemon did not answer ${op} within ${Math.round(timeoutMs / 1000)} s`);
      }, timeoutMs);
      this.pending.set(id, { op, resolve, timer });
      const bytes = Buffer.concat(encodeFrame(LIMITS, { t: 'req', id, op, args }));
      void this.stream.write(bytes).then((sent) => {
        if (!sent) this.shut('the connection to the desktop daemon ended');
      });
    });
  }

  close(): void {
    this.shut('closed');
  }

  private onBytes(bytes: Uint8Array): void {
    let frames;
    try {
      frames = this.decoder.push(bytes);
    } catch (e) {
      this.shut(`the desktop daemon sent a malformed frame: ${(e as Error).message}`);
      return;
    }
    for (const frame of frames) {
      if (!this.helloSeen) {
        const hello = DaemonHello.safeParse(frame.header);
        if (!hello.success || hello.data.protocol.major !== DESKTOP_PROTOCOL.major) {
          this.shut('the desktop daemon speaks another protocol');
          return;
        }
        this.helloSeen = true;
        this.settleHello(ok(true));
        continue;
      }
      const res = DaemonResponse.safeParse(frame.header);
      if (!res.success) {
        this.shut('the desktop daemon sent a malformed answer');
        return;
      }
      const p = this.pending.get(res.data.id);
      if (!p) continue;
      this.pending.delete(res.data.id);
      clearTimeout(p.timer);
      this.lastUsed = Date.now();
      if (!res.data.ok) {
        p.resolve({ ok: false, refusal: res.data.error });
        continue;
      }
      const data = DAEMON_RESULTS[p.op].safeParse(res.data.data);
      if (!data.success) p.resolve({ ok: false, refusal: { code: 'FAILED', message: `the desktop daemon sent a malformed ${p.op} answer` } });
      else p.resolve({ ok: true, answer: { data: data.data as Record<string, unknown>, payload: frame.payload } });
    }
  }

  private shut(why: string): void {
    if (this.closed) return;
    this.closed = why;
    this.settleHello(fail('AGENT_UNAVAILABLE', why));
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.resolve({ ok: false, refusal: { code: 'GONE', message: why } });
    }
    try {
      this.stream.reset('closed', why);
    } catch {
      /* already over */
    }
  }
}
