/**
 * The byte path of a move inside the ComputerObject. Disk frames from the
 * source agent's socket go on to the target agent's socket as they arrive
 * (nothing is buffered here), and the target's acknowledgements of bytes
 * written go back to the source, whose credit they are. So the source is never
 * more than DISK_WINDOW_BYTES ahead of the target's disk, however large the
 * disk: a frame beyond that, a frame out of order, an acknowledgement of bytes
 * never relayed, or STALL_MS without progress breaks the transfer.
 */
import { DISK_WINDOW_BYTES, decodeDiskFrame, type ComputerNotice } from '../../schema/protocol.ts';
import type { AgentLink } from '../agent-link.ts';

/** How long a transfer may make no progress at all before it is given up. */
export const STALL_MS = 60_000;
const WATCH_EVERY_MS = 5_000;

export class DiskRelay {
  /** Bytes passed on to the target. */
  relayed = 0;
  /** Bytes the target has written. */
  acked = 0;
  /** Settles with a reason when the transfer must end early. */
  readonly broken: Promise<string>;
  private breakWith: (reason: string) => void = () => {};
  private lastProgress = Date.now();
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private ended = false;

  constructor(
    readonly id: string,
    private readonly source: AgentLink,
    private readonly target: AgentLink,
  ) {
    this.broken = new Promise((resolve) => (this.breakWith = resolve));
  }

  /** A binary disk frame from the source's socket. */
  onFrame(data: ArrayBuffer): void {
    const f = decodeDiskFrame(new Uint8Array(data));
    if (!f) return this.fail('the source host sent a malformed disk frame');
    // A frame of an earlier, called-off transfer may still be on its way: not ours.
    if (this.ended || f.transfer_id !== this.id) return;
    if (f.offset !== this.relayed) return this.fail(`the source host sent disk bytes at ${f.offset}, expected ${this.relayed}`);
    const end = this.relayed + f.payload.byteLength;
    if (end - this.acked > DISK_WINDOW_BYTES) return this.fail('the source host sent more disk bytes than the target has room for');
    const ws = this.target.socket();
    if (!ws) return this.fail("the target host's agent went away");
    try {
      ws.send(data);
    } catch {
      return this.fail("the target host's agent connection closed");
    }
    this.relayed = end;
    this.lastProgress = Date.now();
  }

  /** The target has written the archive up to `offset`: the source may send that much more. */
  onAck(transferId: string, offset: number): void {
    if (this.ended || transferId !== this.id) return;
    if (offset < this.acked || offset > this.relayed) return this.fail(`the target host acknowledged disk bytes up to ${offset}, but ${this.relayed} were sent`);
    this.acked = offset;
    this.lastProgress = Date.now();
    this.notify(this.source, { type: 'disk.ack', transfer_id: this.id, offset });
  }

  /** Watches for a transfer that makes no progress (while the source exports). */
  watch(): void {
    this.lastProgress = Date.now();
    this.watchdog ??= setInterval(() => {
      if (Date.now() - this.lastProgress > STALL_MS) this.fail(`no disk bytes moved for ${STALL_MS / 1000} s`);
    }, WATCH_EVERY_MS);
  }

  fail(reason: string): void {
    this.breakWith(reason);
  }

  /** Stops relaying; when `cancel`, both agents are told to drop the transfer. */
  end(cancel: boolean): void {
    this.ended = true;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    if (!cancel) return;
    this.notify(this.source, { type: 'disk.cancel', transfer_id: this.id });
    this.notify(this.target, { type: 'disk.cancel', transfer_id: this.id });
  }

  private notify(link: AgentLink, msg: ComputerNotice): void {
    try {
      link.socket()?.send(JSON.stringify(msg));
    } catch {
      /* closed meanwhile: that agent drops the transfer with its connection */
    }
  }
}
