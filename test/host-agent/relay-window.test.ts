/**
 * The receiving half of a relay stream's flow control (schema/relay-window.ts):
 * credits every quarter window, frames beyond the credit refused, and the
 * window widened only when the sender starved while the reader kept up.
 */
import { describe, expect, it } from 'vitest';
import { FLAG_STARVED, MAX_WINDOW } from '../../schema/relay.ts';
import { ReceiveWindow, WindowBudget, starvedFlag } from '../../schema/relay-window.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The sender sends everything its credit allows in `frame`-sized pieces, flagging the one that spends it, as senders do. */
function fill(rx: ReceiveWindow, frame = 256 * KiB): void {
  while (rx.received < rx.credited + rx.window) {
    const room = rx.credited + rx.window - rx.received;
    const n = Math.min(frame, room);
    expect(rx.arrive(rx.received, n, starvedFlag(room, n, true) === FLAG_STARVED)).toBeNull();
  }
}

describe('a relay stream receive window', () => {
  it('credits once a quarter of the window has been taken, and refuses bytes out of order or beyond the credit', () => {
    const rx = new ReceiveWindow(MiB);
    expect(rx.arrive(0, 100 * KiB)).toBeNull();
    expect(rx.arrive(0, 1)).toMatch(/expected/);
    expect(rx.arrive(100 * KiB, MiB)).toMatch(/credit/);
    expect(rx.take(100 * KiB)).toBeNull();
    expect(rx.arrive(100 * KiB, 156 * KiB)).toBeNull();
    expect(rx.take(156 * KiB)).toEqual({ offset: 256 * KiB });
  });

  it('widens, doubling up to MAX_WINDOW, while the sender runs out of credit and the reader keeps up', () => {
    const budget = new WindowBudget(64 * MiB);
    const rx = new ReceiveWindow(MiB, (by) => budget.take(by));
    const windows: number[] = [];
    for (let round = 0; round < 8; round++) {
      // A long round trip: the sender sends its whole credit, the reader takes each frame as it comes.
      const before = rx.received;
      fill(rx);
      let credit = null;
      for (let at = before; at < rx.received; at += 256 * KiB) credit = rx.take(Math.min(256 * KiB, rx.received - at)) ?? credit;
      windows.push(rx.window);
      expect(credit?.offset).toBe(rx.received);
    }
    expect(windows).toEqual([2, 4, 8, 16, 16, 16, 16, 16].map((m) => m * MiB));
    expect(MAX_WINDOW).toBe(16 * MiB);
    expect(rx.grown).toBe(15 * MiB);
  });

  it('never widens for a reader that falls behind: a slow client holds at most the first window', () => {
    const rx = new ReceiveWindow(MiB, () => true);
    for (let round = 0; round < 50; round++) {
      fill(rx);
      // The reader takes only a quarter before the next credit goes out; the rest waits for it.
      const credit = rx.take(256 * KiB);
      expect(credit?.window).toBeUndefined();
    }
    expect(rx.window).toBe(MiB);
    expect(rx.received - rx.taken).toBeLessThanOrEqual(MiB);
  });

  it('a sender flags only the frame that spends its credit, and only for a peer that widens', () => {
    expect(starvedFlag(MiB, 256 * KiB, true)).toBe(0);
    expect(starvedFlag(256 * KiB, 256 * KiB, true)).toBe(FLAG_STARVED);
    expect(starvedFlag(256 * KiB, 256 * KiB, false)).toBe(0);
    expect(starvedFlag(0, 0, true)).toBe(0);
  });

  it('does not widen when the sender never ran out of credit (a short round trip)', () => {
    const rx = new ReceiveWindow(MiB, () => true);
    for (let round = 0; round < 20; round++) {
      // Credits arrive before the sender has used the last quarter of its window.
      expect(rx.arrive(rx.received, 256 * KiB)).toBeNull();
      const credit = rx.take(256 * KiB);
      expect(credit).toEqual({ offset: rx.taken });
    }
    expect(rx.window).toBe(MiB);
  });

  it('widens only within the link budget, and a stream gives back what it was granted', () => {
    const budget = new WindowBudget(3 * MiB);
    const a = new ReceiveWindow(MiB, (by) => budget.take(by));
    const b = new ReceiveWindow(MiB, (by) => budget.take(by));
    const round = (rx: ReceiveWindow) => {
      const before = rx.received;
      fill(rx);
      const first = rx.take(rx.received - before - 1);
      return rx.take(1) ?? first;
    };
    expect(round(a)?.window).toBe(2 * MiB); // +1 MiB
    expect(round(b)?.window).toBe(2 * MiB); // +1 MiB
    expect(round(a)?.window).toBeUndefined(); // +2 MiB would pass the budget
    expect(a.window).toBe(2 * MiB);
    budget.give(b.grown);
    expect(round(a)?.window).toBe(4 * MiB);
  });
});
