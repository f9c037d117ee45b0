/**
 * The receiving half of a relay stream's flow control (schema/relay.ts), the
 * same on both ends: which frames the sender may send, when to credit what
 * the reader has taken, and when to widen the window.
 *
 * A credit goes out once a quarter of the window has been taken, so a sender
 * that filled the window always has a credit coming when the reader resumes.
 * The window doubles (up to MAX_WINDOW, within a budget its owner keeps) when
 * the sender ran out of credit (it flags the frame that spent it,
 * FLAG_STARVED) while the reader kept up: then the window, not the reader, is
 * what holds the stream back — the link's round trip is long for it (between
 * an edge and a host, tens of milliseconds; at 1 MiB per 20 ms round trip a
 * stream could not pass 50 MiB/s). A reader that falls behind never widens
 * it, so a slow client still holds at most a window. As QUIC's
 * STREAM_DATA_BLOCKED, the signal comes from the sender: only it knows that
 * it waits on credit rather than on its source.
 */
import { FLAG_STARVED, MAX_WINDOW } from './relay.ts';

/** The flags a sender puts on a frame of `n` bytes that leaves `room` bytes of its credit: FLAG_STARVED when none is left. */
export const starvedFlag = (room: number, n: number, peerWidens: boolean): number => (peerWidens && n > 0 && room - n <= 0 ? FLAG_STARVED : 0);

export interface Credit {
  offset: number;
  /** Present when the window grew with this credit. */
  window?: number;
}

export class ReceiveWindow {
  /** The window the sender was last told. */
  window: number;
  /** Bytes arrived, taken by the reader, and credited to the sender. */
  received = 0;
  taken = 0;
  credited = 0;
  private readonly initial: number;
  /** Asks the owner for `by` more bytes of window (false: its budget is spent). */
  private readonly grow: (by: number) => boolean;
  /** The latest frame spent the sender's credit: it waits on us (until a frame comes without the flag). */
  private starved = false;

  constructor(window: number, grow: (by: number) => boolean = () => false) {
    this.window = window;
    this.initial = window;
    this.grow = grow;
  }

  /** Bytes of window granted beyond the first: what the owner's budget gets back when the stream ends. */
  get grown(): number {
    return this.window - this.initial;
  }

  /**
   * A frame of `n` bytes at `offset` arrived (`starved`: it spent the
   * sender's credit): null when the sender was entitled to send it, what is
   * wrong otherwise.
   */
  arrive(offset: number, n: number, starved = false): string | null {
    if (offset !== this.received) return `bytes at ${offset}, expected ${this.received}`;
    if (this.received + n > this.credited + this.window) return 'more bytes than its credit';
    this.received += n;
    this.starved = starved;
    return null;
  }

  /** The reader has taken `n` more bytes: the credit to send now, or null. */
  take(n: number): Credit | null {
    this.taken += n;
    if (this.taken - this.credited < this.window / 4) return null;
    let widened: number | undefined;
    // The sender waits on credit while the reader has caught up (nearly nothing waits for it): the window is the bottleneck.
    if (this.starved && this.received - this.taken < this.window / 4 && this.window < MAX_WINDOW) {
      const next = Math.min(this.window * 2, MAX_WINDOW);
      if (this.grow(next - this.window)) widened = this.window = next;
      this.starved = false;
    }
    this.credited = this.taken;
    return widened ? { offset: this.taken, window: widened } : { offset: this.taken };
  }
}

/** The window growth of all streams of one link, bounded: memory stays bounded however many streams widen. */
export class WindowBudget {
  private used = 0;
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  take(by: number): boolean {
    if (this.used + by > this.limit) return false;
    this.used += by;
    return true;
  }

  give(by: number): void {
    this.used = Math.max(0, this.used - by);
  }
}
