/**
 * Streamed processes of one computer, as the ComputerObject sees them: it
 * starts them on the agent, takes their output frames exactly once each (by
 * byte offset, so frames repeated after a reconnect are dropped), hands the
 * bytes to the process's sink (SSE log, exec socket, terminal), acknowledges
 * what the sink has made durable so the agent can send more, and asks a
 * reconnected agent to resume every live process from where it left off.
 */
import { fail, ok, type Result } from '../../schema/errors.ts';
import {
  FRAME_OUTPUT,
  FRAME_STDIN,
  speaks,
  OUTPUT_WINDOW_BYTES,
  encodeFrame,
  type BinaryFrame,
  type OutputStream,
  type ProcExit,
  type ProcStartParams,
} from '../../schema/protocol.ts';
import type { AgentLink } from '../agent-link.ts';
import { ProcTable, nextOffset, type ProcKind, type ProcRow } from './proc-table.ts';

/** How long an ended process's output stays readable. */
export const LOG_RETENTION_MS = 10 * 60_000;
const fromBase64 = (s: string): Uint8Array => Uint8Array.from(atob(s), (ch) => ch.charCodeAt(0));

/** Ended processes are forgotten on the agent in one notice for all that ended within this long. */
const FORGET_DELAY_MS = 50;
/** Acks go out this often, or sooner when a quarter window is waiting. */
const ACK_DELAY_MS = 10;
const ACK_EAGER_BYTES = OUTPUT_WINDOW_BYTES / 4;

/** How a process ended; an error may say why in a word (`host_lost`), for sinks that report it. */
export type ProcOutcome = { kind: 'exit'; exit: ProcExit } | { kind: 'error'; message: string; reason?: string };

/** Where a process's output goes. */
export interface ProcSink {
  /** New bytes of a stream, in order, each byte once. */
  output(stream: OutputStream, bytes: Uint8Array): void;
  /** The process ended, or was lost with its computer. */
  end(outcome: ProcOutcome): void;
  /** Makes everything received so far durable (and stores the sink's state in row.sink_state). */
  commit(row: ProcRow): void;
  /** The stored log is going away. */
  dispose(): void;
  /** Ends the sink's readers now (the computer is being deleted); its log goes with the object's storage. */
  close?(): void;
  /** How long the ended process's log is kept (default LOG_RETENTION_MS). */
  keepFor?(): number;
  /**
   * A sink whose output is only ever wanted at the end (sync exec) is
   * acknowledged only when enough has come to need room, not every few ms.
   */
  ackWhenFull?: boolean;
  /** Its process ended and a request takes the result now: nothing of it needs storing. */
  claimed?(): boolean;
  /**
   * True while the sink's readers are too far behind to take more: output is
   * stored but not acknowledged, so the agent stops sending and the process
   * waits. The sink calls `release` when they catch up.
   */
  holds?(): boolean;
}

export type SinkFactory = (row: ProcRow) => ProcSink;

/** Told when a process starts (once the agent has it running) and when it ends, however it ends. */
export interface ProcObserver {
  started(row: ProcRow, params: ProcStartParams): void;
  ended(row: ProcRow, outcome: ProcOutcome): void;
}

export class ProcManager {
  readonly table: ProcTable;
  private readonly rows = new Map<string, ProcRow>();
  private readonly sinks = new Map<string, ProcSink>();
  private readonly unacked = new Map<string, number>();
  private ackTimer: ReturnType<typeof setTimeout> | null = null;
  /** Processes asked to send again from our offsets after a frame past them. */
  private readonly reattaching = new Set<string>();
  /**
   * Processes kept in memory only (sync exec), stored when something needs
   * them stored: the agent link dropped, their output needs acknowledging,
   * their request gave up. A short command that runs while all goes well
   * costs no storage write, and so no wait for one before its answer leaves.
   */
  private readonly volatile = new Set<string>();
  /** Ended processes the agent is yet to be told to forget, and the timer that tells it. */
  private readonly toForget = new Set<string>();
  private forgetTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    sql: SqlStorage,
    private readonly link: AgentLink,
    /** The kinds of process this object runs, each with where its output goes. */
    private readonly factories: Partial<Record<ProcKind, SinkFactory>>,
    private readonly observer?: ProcObserver,
  ) {
    this.table = new ProcTable(sql);
  }

  row(procId: string): ProcRow | null {
    let row = this.rows.get(procId);
    if (!row) {
      row = this.table.get(procId) ?? undefined;
      if (row) this.rows.set(procId, row);
    }
    return row ?? null;
  }

  /** The sink of a process, made again from its row after the object woke up. */
  sink(procId: string): ProcSink | null {
    let s = this.sinks.get(procId);
    if (!s) {
      const row = this.row(procId);
      const factory = row && this.factories[row.kind];
      if (!row || !factory) return null;
      s = factory(row);
      this.sinks.set(procId, s);
    }
    return s;
  }

  hasRunning(): boolean {
    return this.running().length > 0;
  }

  /** Running processes, stored or not. */
  running(): ProcRow[] {
    const rows = this.table.running().map((r) => this.row(r.proc_id)!);
    for (const id of this.volatile) {
      const row = this.rows.get(id);
      if (row?.status === 'running') rows.push(row);
    }
    return rows;
  }

  /** Stores a row (and what its sink holds) now, if it lived in memory only. */
  persist(row: ProcRow): void {
    if (!this.volatile.delete(row.proc_id)) return;
    this.table.insert(row);
    this.sinks.get(row.proc_id)?.commit(row);
    this.table.save(row);
  }

  /** Stores every running process that lived in memory only (the agent link dropped: they may outlive this connection). */
  persistAll(): void {
    for (const id of [...this.volatile]) {
      const row = this.rows.get(id);
      if (row?.status === 'running') this.persist(row);
    }
  }

  /** Saves a row's moving parts (a row in memory only has nothing to save yet). */
  save(row: ProcRow): void {
    if (!this.volatile.has(row.proc_id)) this.table.save(row);
  }

  /** A request took an ended process's result: one kept in memory only is let go. */
  doneWith(row: ProcRow): void {
    if (row.status !== 'ended' || !this.volatile.delete(row.proc_id)) return;
    this.sinks.get(row.proc_id)?.dispose();
    this.sinks.delete(row.proc_id);
    this.rows.delete(row.proc_id);
  }

  /**
   * Records and starts a process; its row exists before the agent is asked, so
   * no output can arrive unannounced. With `keepIfUnanswered`, a start the
   * agent was sent but went away before answering leaves the process running
   * as far as the object knows: it may well have started, and the next agent
   * re-attaches it (or says it is not there).
   */
  async start(
    kind: ProcKind,
    orgId: string,
    params: ProcStartParams,
    sinkState: Record<string, unknown> = {},
    opts: { keepIfUnanswered?: boolean; volatile?: boolean } = {},
  ): Promise<Result<ProcRow>> {
    const now = Date.now();
    const row: ProcRow = {
      proc_id: params.proc_id, kind, org_id: orgId, status: 'running', offsets: {}, stdin_sent: 0,
      sink_state: sinkState, exit: null, created_at: now, ended_at: null, expires_at: null,
    };
    if (opts.volatile) this.volatile.add(row.proc_id);
    else this.table.insert(row);
    this.rows.set(row.proc_id, row);
    let sent = false;
    const r = await this.link.request('proc.start', { params }, 30_000, { onSent: () => (sent = true) });
    if (!r.ok && opts.keepIfUnanswered && sent && r.code === 'AGENT_UNAVAILABLE') {
      // Until an agent confirms it (re-attaching), the process may never have started.
      row.sink_state = { ...row.sink_state, unconfirmed: true };
      this.persist(row);
      this.save(row);
      this.observer?.started(row, params);
      return ok(row);
    }
    if (!r.ok) {
      this.finish(row, { kind: 'error', message: r.message, reason: r.code === 'AGENT_UNAVAILABLE' ? 'agent_unreachable' : 'start_failed' });
      return r.code === 'AGENT_ERROR' ? fail('BAD_REQUEST', `the command could not start: ${r.message}`) : r;
    }
    this.observer?.started(row, params);
    // Asked to wait for a short process's end (1.3), the agent answered with it, and with its output when that was small.
    if (r.value.exit) {
      for (const c of r.value.output ?? []) {
        this.onOutput({ kind: FRAME_OUTPUT, stream: c.stream, proc_id: row.proc_id, offset: c.offset, payload: fromBase64(c.data) });
      }
      this.onExit(row.proc_id, r.value.exit);
    }
    return ok(row);
  }

  onOutput(f: BinaryFrame): void {
    const row = this.row(f.proc_id);
    if (!row || row.status !== 'running') return;
    const have = nextOffset(row, f.stream);
    const end = f.offset + f.payload.byteLength;
    if (end <= have) return; // a repeat after a reconnect
    if (f.offset > have) {
      // Bytes between are missing (a faulty or confused agent): take nothing past the gap, and
      // have the process sent again from what we hold rather than hand viewers a hole.
      this.reattach(row);
      return;
    }
    const fresh = f.payload.subarray(have - f.offset);
    row.offsets[f.stream] = end;
    this.sink(f.proc_id)?.output(f.stream, fresh);
    const waiting = (this.unacked.get(f.proc_id) ?? 0) + fresh.byteLength;
    this.unacked.set(f.proc_id, waiting);
    if (waiting >= ACK_EAGER_BYTES) this.ackNow();
    else if (!this.sinks.get(f.proc_id)?.ackWhenFull) this.ackSoon();
  }

  onExit(procId: string, exit: ProcExit): void {
    const row = this.row(procId);
    if (!row || row.status !== 'running') return;
    // Measured here: this object saw the start, while the agent reporting the exit may be a newer one.
    this.finish(row, { kind: 'exit', exit: { ...exit, duration_ms: Date.now() - row.created_at } });
    // The guest may drop what it kept for re-attaching: an agent of 1.3 is told in one notice for
    // every process that ended within a few ms (a busy computer ends many), older ones by a request each.
    if (speaks(this.link.protocol() ?? { major: 0, minor: 0 }, 3)) {
      this.toForget.add(procId);
      this.forgetTimer ??= setTimeout(() => this.forgetNow(), FORGET_DELAY_MS);
    } else void this.link.request('proc.forget', { proc_id: procId }, 10_000);
  }

  /** A process that will never report again (its computer stopped, or its host lost it). */
  lose(procId: string, message: string, reason?: string): void {
    const row = this.row(procId);
    if (row && row.status === 'running') this.finish(row, { kind: 'error', message, reason });
  }

  loseAll(message: string, reason?: string): void {
    for (const row of this.running()) this.lose(row.proc_id, message, reason);
  }

  /** After an agent attaches: every live process resumes from the offsets we hold. */
  async resumeAll(): Promise<void> {
    await Promise.all(
      this.running().map(async (row) => {
        const r = await this.link.request('proc.attach', { proc_id: row.proc_id, offsets: row.offsets }, 30_000);
        if (!r.ok) {
          if (r.code !== 'AGENT_UNAVAILABLE') this.lose(row.proc_id, 'the command was lost: its computer restarted or its process is gone');
          return;
        }
        if (row.sink_state.unconfirmed) {
          row.sink_state = { ...row.sink_state, unconfirmed: false };
          this.save(row);
        }
        if (!r.value.running && r.value.exit) this.onExit(row.proc_id, r.value.exit);
      }),
    );
  }

  private reattach(row: ProcRow): void {
    if (this.reattaching.has(row.proc_id)) return;
    this.reattaching.add(row.proc_id);
    void this.link
      .request('proc.attach', { proc_id: row.proc_id, offsets: row.offsets }, 30_000)
      .finally(() => this.reattaching.delete(row.proc_id));
  }

  /** Sends stdin bytes; the caller keeps within the agent's window using row.stdin_sent and the acks. */
  sendStdin(procId: string, bytes: Uint8Array): boolean {
    const row = this.row(procId);
    if (!row || !this.sendStdinAt(procId, row.stdin_sent, bytes)) return false;
    row.stdin_sent += bytes.byteLength;
    return true;
  }

  /** Sends stdin bytes that start at `offset` (earlier than row.stdin_sent when they are sent again). */
  sendStdinAt(procId: string, offset: number, bytes: Uint8Array): boolean {
    const row = this.row(procId);
    const ws = this.link.socket();
    if (!row || row.status !== 'running' || !ws) return false;
    try {
      ws.send(encodeFrame({ kind: FRAME_STDIN, stream: 'stdout', proc_id: procId, offset, payload: bytes }));
    } catch {
      return false; // the socket is closing; resumeAll sends these again to the next agent
    }
    return true;
  }

  /** Tells the agent to forget every ended process collected since the last notice. */
  private forgetNow(): void {
    this.forgetTimer = null;
    const ids = [...this.toForget].slice(0, 256);
    for (const id of ids) this.toForget.delete(id);
    if (this.toForget.size) this.forgetTimer = setTimeout(() => this.forgetNow(), FORGET_DELAY_MS);
    try {
      this.link.socket()?.send(JSON.stringify({ type: 'procs.forget', proc_ids: ids }));
    } catch {
      /* closing: the guest drops them in time (it keeps a bounded number of exited processes) */
    }
  }

  /** Ends the readers of every sink in memory (the computer is being deleted). */
  closeSinks(): void {
    for (const sink of this.sinks.values()) sink.close?.();
  }

  /** Drops logs of processes that ended long enough ago. */
  sweep(now = Date.now()): void {
    for (const procId of this.table.expired(now)) {
      this.sink(procId)?.dispose();
      this.sinks.delete(procId);
      this.rows.delete(procId);
      this.table.delete(procId);
    }
  }

  nextExpiry(): number | null {
    return this.table.nextExpiry();
  }

  /** Ends a process's row; `started` is false for one that never ran (its observer heard nothing of it). */
  private finish(row: ProcRow, outcome: ProcOutcome, started = true): void {
    const now = Date.now();
    row.status = 'ended';
    row.exit = outcome.kind === 'exit' ? outcome.exit : null;
    row.ended_at = now;
    const sink = this.sink(row.proc_id);
    row.expires_at = now + (sink?.keepFor?.() ?? LOG_RETENTION_MS);
    this.unacked.delete(row.proc_id);
    if (started) this.observer?.ended(row, outcome);
    // One in memory only whose result a request takes now is never stored (doneWith lets it go).
    if (this.volatile.has(row.proc_id) && sink?.claimed?.()) {
      sink.end(outcome);
      return;
    }
    this.persist(row);
    sink?.end(outcome);
    sink?.commit(row);
    this.table.save(row);
  }

  private ackSoon(): void {
    if (!this.ackTimer) this.ackTimer = setTimeout(() => this.ackNow(), ACK_DELAY_MS);
  }

  /** A sink's readers caught up: the output it held back is acknowledged now. */
  release(procId: string): void {
    if (this.unacked.has(procId)) this.ackSoon();
  }

  /**
   * Commits each sink, stores offsets, then tells the agent: what is acknowledged
   * is never needed again. A sink that holds keeps its output unacknowledged.
   */
  private ackNow(): void {
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    const ws = this.link.socket();
    for (const procId of [...this.unacked.keys()]) {
      const row = this.row(procId);
      if (!row) {
        this.unacked.delete(procId);
        continue;
      }
      const sink = this.sink(procId);
      // Acknowledged output is never needed from the agent again: it must be stored first.
      this.persist(row);
      sink?.commit(row);
      this.table.save(row);
      if (sink?.holds?.()) continue;
      this.unacked.delete(procId);
      try {
        ws?.send(JSON.stringify({ type: 'proc.ack', proc_id: procId, offsets: row.offsets }));
      } catch {
        /* the agent resumes from stored offsets when it returns */
      }
    }
  }
}
