/**
 * A TCP connection made by a computer's guest inside the computer, as a Node
 * Duplex on the host (schema/guest.ts, TCP): what is written goes to the app
 * as `tcp_send` requests with at most a window unanswered; what the app
 * sends arrives as `tcp_data` events and is acknowledged as this stream's
 * reader takes it, so a slow reader stops the guest reading the app's socket
 * rather than filling memory. Half-open capable: end() is a FIN to the app, a
 * FIN from the app ends the readable side only.
 */
import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { GUEST_FILES_MINOR, GUEST_TCP_MINOR, type FileStream, type TcpEvent } from '../../schema/guest.ts';
import { GuestError, type GuestClient } from '../guest-client.ts';
import { RelayTargetError } from './target-error.ts';

/** Bytes the guest may send beyond our last acknowledgement, and we may have unanswered towards it. */
export const GUEST_TCP_WINDOW = 512 * 1024;
/**
 * A file stream's window: a file has no app behind it to pace, only a disk,
 * so a larger window keeps the guest's thread busy (≈90 MiB/s through a
 * computer's guest at 512 KiB, ≈250 at 2 MiB) for 2 MiB of the agent's memory.
 */
export const GUEST_FILE_WINDOW = 2 * 1024 * 1024;
/** Largest tcp_send payload. */
const SEND_CHUNK = 128 * 1024;
const OPEN_TIMEOUT_MS = 10_000;

/**
 * Connects to `port` inside the computer whose guest is `guest`. The stream is
 * returned at once, still connecting (`pending`, then 'connect', or an error
 * such as `refused`): what is written meanwhile waits in the guest, so an
 * HTTP request follows its connection without a round trip between them.
 */
export async function openGuestTcp(guest: GuestClient, port: number): Promise<Duplex> {
  if (guest.hello.protocol.minor < GUEST_TCP_MINOR) {
    throw new RelayTargetError('unsupported', "this computer's guest agent is too old to relay connections; restart the computer to update it");
  }
  const conn = new GuestTcp(guest, `c${randomBytes(6).toString('hex')}`, GUEST_TCP_WINDOW);
  guest.request({ op: 'tcp_open', conn: conn.id, port, window: GUEST_TCP_WINDOW }, { timeoutMs: OPEN_TIMEOUT_MS + 5_000 }).then(
    () => conn.connected(),
    (err: unknown) => conn.destroy(openFailure(err, port)),
  );
  return conn;
}

function openFailure(err: unknown, port: number): RelayTargetError {
  if (err instanceof GuestError && err.code === 'REFUSED') return new RelayTargetError('refused', `nothing is listening on port ${port} in the computer`);
  if (err instanceof GuestError && err.code === 'TIMEOUT') return new RelayTargetError('timeout', `port ${port} in the computer did not answer in time`);
  if (err instanceof GuestError && err.code === 'DISCONNECTED') return new RelayTargetError('unreachable', "the computer's guest went away");
  return new RelayTargetError('error', `the computer could not connect to port ${port}: ${(err as Error).message}`);
}

/**
 * A file's bytes in the computer (guest op file_open, schema/guest.ts FileStream) as the same kind
 * of connection: the guest's far end is a thread copying between the file and a socket.
 */
export async function openGuestFile(guest: GuestClient, request: FileStream): Promise<Duplex> {
  if (guest.hello.protocol.minor < GUEST_FILES_MINOR) {
    throw new RelayTargetError('unsupported', "this computer's guest agent is too old to move files; restart the computer to update it");
  }
  const conn = new GuestTcp(guest, `f${randomBytes(6).toString('hex')}`, GUEST_FILE_WINDOW);
  try {
    await guest.request({ op: 'file_open', conn: conn.id, window: GUEST_FILE_WINDOW, request }, { timeoutMs: OPEN_TIMEOUT_MS });
  } catch (err) {
    conn.forget();
    if (err instanceof GuestError && err.code === 'DISCONNECTED') throw new RelayTargetError('unreachable', "the computer's guest went away");
    throw new RelayTargetError(err instanceof GuestError && err.code === 'BUSY' ? 'limit' : 'error', `the computer could not open ${request.path}: ${(err as Error).message}`);
  }
  conn.connected();
  return conn;
}

class GuestTcp extends Duplex {
  readonly id: string;
  private readonly guest: GuestClient;
  /** Bytes either side may have unanswered (tcp_send) or unacknowledged (tcp_data). */
  private readonly window: number;
  /** Bytes sent and not yet answered by the guest. */
  private inflight = 0;
  private waiting: Array<() => void> = [];
  private received = 0;
  private acked = 0;
  private paused = false;
  private closedByGuest = false;
  private readEnded = false;
  /** Still connecting, as net.Socket says it. */
  pending = true;

  constructor(guest: GuestClient, id: string, window: number) {
    super({ allowHalfOpen: true });
    this.guest = guest;
    this.id = id;
    this.window = window;
    guest.trackTcp(id, (ev, payload) => this.onEvent(ev, payload));
  }

  forget(): void {
    this.guest.untrackTcp(this.id);
  }

  /** The guest has connected. */
  connected(): void {
    if (this.destroyed) return;
    this.pending = false;
    this.emit('connect');
  }

  _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    void this.send(chunk).then(() => done(), (err: Error) => done(err));
  }

  _final(done: (err?: Error | null) => void): void {
    void this.drained()
      .then(() => (this.closedByGuest ? undefined : this.guest.request({ op: 'tcp_shutdown', conn: this.id }, { timeoutMs: 30_000 })))
      .then(
        () => done(),
        // Gone on the guest's side meanwhile: its tcp_closed (with its reason) is on the way.
        (err: Error) => done(err instanceof GuestError && err.code === 'NOT_FOUND' ? null : err),
      );
  }

  _read(): void {
    if (!this.paused) return;
    this.paused = false;
    this.ack(true);
  }

  _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.forget();
    for (const w of this.waiting.splice(0)) w();
    if (!this.closedByGuest && !this.guest.closed) {
      // Answered or not, the connection is over here; the guest closes its socket (abortively on an error).
      this.guest.request({ op: 'tcp_close', conn: this.id, reset: err !== null || !this.writableFinished }, { timeoutMs: 10_000 }).catch(() => {});
    }
    done(err);
  }

  private async send(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; at += SEND_CHUNK) {
      const piece = chunk.subarray(at, at + SEND_CHUNK);
      while (this.inflight > 0 && this.inflight + piece.length > this.window) {
        await new Promise<void>((r) => this.waiting.push(r));
        if (this.destroyed) throw new RelayTargetError('reset', 'the connection closed');
      }
      this.inflight += piece.length;
      this.guest.request({ op: 'tcp_send', conn: this.id }, { payload: piece, timeoutMs: 120_000 }).then(
        () => this.answered(piece.length),
        (err: Error) => {
          this.answered(piece.length);
          this.destroy(RelayTargetError.from(err));
        },
      );
    }
  }

  private answered(n: number): void {
    this.inflight -= n;
    for (const w of this.waiting.splice(0)) w();
  }

  /** Resolves once every byte sent has been written into the socket by the guest. */
  private async drained(): Promise<void> {
    while (this.inflight > 0 && !this.destroyed) await new Promise<void>((r) => this.waiting.push(r));
  }

  private onEvent(ev: TcpEvent, payload: Buffer): void {
    if (this.destroyed) return;
    if (ev.ev === 'tcp_data') {
      if (ev.offset !== this.received) return void this.destroy(new RelayTargetError('protocol', `the guest sent bytes at ${ev.offset}, expected ${this.received}`));
      this.received += payload.length;
      if (!this.push(payload)) this.paused = true;
      else this.ack(false);
    } else if (ev.ev === 'tcp_end') {
      this.endRead();
    } else {
      this.closedByGuest = true;
      this.forget();
      // Later than now: this may come right behind the open's answer, before whoever awaited the
      // open has put its listeners on (an 'error' nobody listens to would end the agent).
      const error = ev.error;
      if (error) setImmediate(() => this.destroy(new RelayTargetError('reset', error)));
      else {
        this.endRead();
        for (const w of this.waiting.splice(0)) w();
      }
    }
  }

  private endRead(): void {
    if (this.readEnded) return;
    this.readEnded = true;
    this.push(null);
  }

  /** Acknowledges what the reader took: every quarter window, or all of it when the reader asks for more. */
  private ack(force: boolean): void {
    const owed = this.received - this.acked;
    if (owed === 0 || (!force && owed < this.window / 4)) return;
    this.acked = this.received;
    this.guest.request({ op: 'tcp_ack', conn: this.id, offset: this.acked }, { timeoutMs: 30_000 }).catch(() => {});
  }
}
