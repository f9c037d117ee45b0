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
  FRAME_STDIN,
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
/** Acks go out this often, or sooner when a quarter window is waiting. */
const ACK_DELAY_MS = 10;
const ACK_EAGER_BYTES = OUTPUT_WINDOW_BYTES / 4;

export type ProcOutcome = { kind: 'exit'; exit: ProcExit } | { kind: 'error'; message: string };

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

  constructor(
    sql: SqlStorage,
    private readonly link: AgentLink,
    private readonly factories: Record<ProcKind, SinkFactory>,
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
      if (!row) return null;
      s = this.factories[row.kind](row);
      this.sinks.set(procId, s);
    }
    return s;
  }

  hasRunning(): boolean {
    return this.table.running().length > 0;
  }

  /** Records and starts a process; its row exists before the agent is asked, so no output can arrive unannounced. */
  async start(kind: ProcKind, orgId: string, params: ProcStartParams, sinkState: Record<string, unknown> = {}): Promise<Result<ProcRow>> {
    const now = Date.now();
    const row: ProcRow = {
      proc_id: params.proc_id, kind, org_id: orgId, status: 'running', offsets: {}, stdin_sent: 0,
      sink_state: sinkState, exit: null, created_at: now, ended_at: null, expires_at: null,
    };
    this.table.insert(row);
    this.rows.set(row.proc_id, row);
    const r = await this.link.request('proc.start', { params }, 30_000);
    if (!r.ok) {
      this.finish(row, { kind: 'error', message: r.message }, false);
      return r.code === 'AGENT_ERROR' ? fail('BAD_REQUEST', `the command could not start: ${r.message}`) : r;
    }
    this.observer?.started(row, params);
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
    else this.ackSoon();
  }

  onExit(procId: string, exit: ProcExit): void {
    const row = this.row(procId);
    if (!row || row.status !== 'running') return;
    // Measured here: this object saw the start, while the agent reporting the exit may be a newer one.
    this.finish(row, { kind: 'exit', exit: { ...exit, duration_ms: Date.now() - row.created_at } });
    // The guest may drop what it kept for re-attaching.
    void this.link.request('proc.forget', { proc_id: procId }, 10_000);
  }

  /** A process that will never report again (its computer stopped, or its host lost it). */
  lose(procId: string, message: string): void {
    const row = this.row(procId);
    if (row && row.status === 'running') this.finish(row, { kind: 'error', message });
  }

  loseAll(message: string): void {
    for (const row of this.table.running()) this.lose(row.proc_id, message);
  }

  /** After an agent attaches: every live process resumes from the offsets we hold. */
  async resumeAll(): Promise<void> {
    await Promise.all(
      this.table.running().map(async (stored) => {
        const row = this.row(stored.proc_id)!;
        const r = await this.link.request('proc.attach', { proc_id: row.proc_id, offsets: row.offsets }, 30_000);
        if (!r.ok) {
          if (r.code !== 'AGENT_UNAVAILABLE') this.lose(row.proc_id, 'the command was lost: its computer restarted or its process is gone');
          return;
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
    row.expires_at = now + LOG_RETENTION_MS;
    const sink = this.sink(row.proc_id);
    sink?.end(outcome);
    sink?.commit(row);
    this.table.save(row);
    this.unacked.delete(row.proc_id);
    if (started) this.observer?.ended(row, outcome);
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
