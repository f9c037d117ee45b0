/**
 * Stdin of streamed processes, with flow control. Bytes from a client are
 * queued here and sent to the agent in frames while less than a window is
 * unacknowledged (proc.stdin_ack says how far the process has been written),
 * so a megabyte paste reaches a slow reader byte-exact while neither the
 * agent nor this object holds more than a bounded amount. A client that
 * pushes more than the queue holds is told to stop (1009).
 *
 * Bytes in flight are kept until acknowledged: when the agent's connection
 * drops, what it had not acknowledged may or may not have reached the
 * process, so it is sent again, at its offsets, to the agent that comes back,
 * and the computer skips what it already took. A keystroke is neither lost
 * nor typed twice.
 *
 * The queue lives in memory. While anything is queued or in flight a timer
 * keeps the object awake (an object with a pending timer is not hibernated),
 * and retries sending when the agent was away.
 */
import type { AgentLink } from '../agent-link.ts';
import type { ProcManager } from './proc-manager.ts';

/** Stdin bytes sent to the agent and not yet acknowledged, at most, per process. */
export const STDIN_WINDOW_BYTES = 1024 * 1024;
/** Stdin bytes waiting in the object beyond the window, at most, per process. */
export const STDIN_QUEUE_BYTES = 16 * 1024 * 1024;
/** Payload of one stdin frame to the agent. */
const STDIN_FRAME_BYTES = 64 * 1024;
const KEEPALIVE_MS = 5_000;

interface Pump {
  /** Stdin offset the agent has written up to. */
  acked: number;
  /** Frames sent after `acked`, in order, until they are acknowledged. */
  inFlight: Uint8Array[];
  queue: Uint8Array[];
  queued: number;
  /** Close stdin once the queue is sent. */
  eof: boolean;
}

export class StdinPumps {
  private readonly pumps = new Map<string, Pump>();
  private keepAlive: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly procs: ProcManager,
    private readonly link: AgentLink,
  ) {}

  /** Queues bytes for a process's stdin; false when the queue would pass STDIN_QUEUE_BYTES (nothing is queued then). */
  write(procId: string, bytes: Uint8Array): boolean {
    const p = this.pump(procId);
    if (!p) return true; // the process is gone; its input goes nowhere
    if (bytes.byteLength === 0) return true;
    if (p.queued + bytes.byteLength > STDIN_QUEUE_BYTES) return false;
    p.queue.push(bytes);
    p.queued += bytes.byteLength;
    this.flush(procId, p);
    return true;
  }

  /** Closes the process's stdin after everything queued has been sent. */
  end(procId: string): void {
    const p = this.pump(procId);
    if (!p) return;
    p.eof = true;
    this.flush(procId, p);
  }

  /** proc.stdin_ack: the agent has written the process's stdin up to `offset`. */
  onAck(procId: string, offset: number): void {
    const p = this.pumps.get(procId);
    const row = this.procs.row(procId);
    if (!p || !row) return;
    const acked = Math.min(offset, row.stdin_sent);
    for (let drop = acked - p.acked; drop > 0 && p.inFlight.length; ) {
      const head = p.inFlight[0];
      if (head.byteLength <= drop) p.inFlight.shift();
      else p.inFlight[0] = head.subarray(drop);
      drop -= head.byteLength;
    }
    p.acked = Math.max(p.acked, acked);
    this.flush(procId, p);
  }

  /**
   * An agent attached again. Bytes that were in flight may or may not have
   * reached the process with the old connection, so they go again from the
   * last acknowledged offset; the computer skips what it already has.
   */
  resumeAll(): void {
    for (const [procId, p] of this.pumps) {
      let at = p.acked;
      for (const bytes of p.inFlight) {
        if (!this.procs.sendStdinAt(procId, at, bytes)) break;
        at += bytes.byteLength;
      }
      this.flush(procId, p);
    }
  }

  /** Bytes queued or in flight for a process. */
  pending(procId: string): { queued: number; inFlight: number } {
    const p = this.pumps.get(procId);
    const row = this.procs.row(procId);
    return { queued: p?.queued ?? 0, inFlight: p && row ? row.stdin_sent - p.acked : 0 };
  }

  /** The process ended: its queue goes. */
  drop(procId: string): void {
    this.pumps.delete(procId);
    this.updateKeepAlive();
  }

  private pump(procId: string): Pump | null {
    let p = this.pumps.get(procId);
    if (p) return p;
    const row = this.procs.row(procId);
    if (!row || row.status !== 'running') return null;
    // Made again after the object woke: nothing was in flight then (the keep-alive timer saw to that).
    p = { acked: row.stdin_sent, inFlight: [], queue: [], queued: 0, eof: false };
    this.pumps.set(procId, p);
    return p;
  }

  private flush(procId: string, p: Pump): void {
    const row = this.procs.row(procId);
    if (!row || row.status !== 'running') {
      this.drop(procId);
      return;
    }
    let sent = false;
    while (p.queued > 0) {
      const room = STDIN_WINDOW_BYTES - (row.stdin_sent - p.acked);
      if (room <= 0) break;
      const head = p.queue[0];
      const n = Math.min(head.byteLength, room, STDIN_FRAME_BYTES);
      const bytes = head.subarray(0, n);
      if (!this.procs.sendStdin(procId, bytes)) break; // no agent: the keep-alive timer tries again
      p.inFlight.push(bytes);
      sent = true;
      if (n === head.byteLength) p.queue.shift();
      else p.queue[0] = head.subarray(n);
      p.queued -= n;
    }
    if (p.eof && p.queued === 0 && this.link.socket()) {
      p.eof = false;
      void this.link.request('proc.close_stdin', { proc_id: procId }, 10_000);
    }
    // The offset the next frame carries must survive an eviction (saved after the sends: they need not wait for it).
    if (sent) this.procs.save(row);
    this.updateKeepAlive();
  }

  private busy(): boolean {
    for (const [procId, p] of this.pumps) {
      const row = this.procs.row(procId);
      if (p.queued > 0 || p.eof || (row && row.stdin_sent > p.acked)) return true;
    }
    return false;
  }

  private updateKeepAlive(): void {
    const busy = this.busy();
    if (busy && !this.keepAlive) {
      this.keepAlive = setInterval(() => {
        for (const [procId, p] of [...this.pumps]) this.flush(procId, p);
      }, KEEPALIVE_MS);
    } else if (!busy && this.keepAlive) {
      clearInterval(this.keepAlive);
      this.keepAlive = null;
    }
  }
}
