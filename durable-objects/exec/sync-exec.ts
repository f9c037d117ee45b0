/**
 * Sync exec (POST /exec and /exec/python, spec/03-exec.txt) as a process like
 * any streamed one (ProcManager): its output arrives in frames with byte
 * offsets and is acknowledged once stored, so when the agent's socket drops
 * mid-command nothing is lost — the next agent re-attaches from the stored
 * offsets and the waiting request gets the real result within its own time.
 *
 * The request waits for the exit until the command's timeout plus a grace
 * (the kill takes 2 s; a redialing or restarted agent a few more). A command
 * that never started answers 502; one whose agent stays away past that
 * answers 504 RESULT_PENDING, and a retry with the same Idempotency-Key is
 * the same command (its process id comes from the key): it waits for, or
 * returns, that command's result and never runs it a second time.
 *
 * Output: `output` is stdout and stderr together in the order the computer
 * read them (the page's combined output), `stdout` and `stderr` each alone;
 * each keeps at most `max_output_bytes`, beyond which output is read and
 * dropped in the computer itself (`truncated`).
 *
 * Cost: while all goes well the command lives in memory only (ProcManager's
 * volatile rows) — no storage write, so no answer waits for one — and a
 * short one's end comes with the start's answer. It is stored, with what
 * output came, as soon as that matters: the agent link drops, its output
 * needs acknowledging, or its request gives up.
 */
import { fail, ok, type ErrorCode, type Result } from '../../schema/errors.ts';
import type { OutputStream, ProcStartParams } from '../../schema/protocol.ts';
import { sha256Hex } from '../../worker/http/ids.ts';
import { LOG_RETENTION_MS, type ProcManager, type ProcOutcome, type ProcSink } from './proc-manager.ts';
import { newProcId } from './proc-id.ts';
import type { ProcRow } from './proc-table.ts';
import type { StdinPumps } from './stdin-pump.ts';
import { joinBytes as join } from '../bytes.ts';

/** How long the agent holds the start's answer for the command's end, which then comes with it. */
const WAIT_EXIT_MS = 2_000;
/** After the command's own timeout, how long a request waits for its exit (the kill's grace, an agent's redial). */
export const RESULT_GRACE_MS = 15_000;
/** How long the result of a command whose request gave up waiting is kept for a retry with the same key. */
export const UNCLAIMED_RESULT_MS = 24 * 60 * 60_000;

export interface SyncExecParams {
  command: string;
  timeout_s: number;
  /** Written to stdin, which is then closed; absent: stdin is /dev/null. */
  stdin?: string;
  max_output_bytes: number;
  /** The request's Idempotency-Key: a retry with it is the same command. */
  key?: string;
}

export interface SyncExecResult {
  output: string;
  stdout: string;
  stderr: string;
  exit_code: number;
  timed_out: boolean;
  truncated: boolean;
  duration_ms: number;
}

type Part = 'output' | 'stdout' | 'stderr';
const PARTS: Part[] = ['output', 'stdout', 'stderr'];

interface SyncState {
  max_output_bytes: number;
  timeout_s: number;
  /** Of the command and its stdin: the same key with another command is another command. */
  fingerprint: string;
  /** Bytes kept so far, and rows stored, per part. */
  kept?: Record<Part, number>;
  rows?: Record<Part, number>;
  truncated?: boolean;
  /** Why it ended without an exit (its computer stopped, its process was lost). */
  error?: string;
  /** Set by ProcManager until an agent confirms the process exists. */
  unconfirmed?: boolean;
}

const decoder = () => new TextDecoder();

export class SyncExecSink implements ProcSink {
  private readonly state: SyncState;
  private readonly kept: Record<Part, number>;
  private readonly rows: Record<Part, number>;
  private readonly pending: Record<Part, Uint8Array[]> = { output: [], stdout: [], stderr: [] };
  private outcome: ProcOutcome | null = null;
  private readonly waiters: Array<(o: ProcOutcome) => void> = [];
  /** Its output is only wanted at the end: acknowledged when room is needed, not every few ms. */
  readonly ackWhenFull = true;

  constructor(
    private readonly sql: SqlStorage,
    private readonly row: ProcRow,
    /** Whether a request is there to take the result when it comes (it started the command, or retries it). */
    private readonly requested: () => boolean,
  ) {
    this.state = row.sink_state as unknown as SyncState;
    this.kept = { output: 0, stdout: 0, stderr: 0, ...this.state.kept };
    this.rows = { output: 0, stdout: 0, stderr: 0, ...this.state.rows };
    if (row.status === 'ended') this.outcome = row.exit ? { kind: 'exit', exit: row.exit } : { kind: 'error', message: this.state.error ?? 'the command ended without an exit code' };
  }

  static init(sql: SqlStorage): void {
    sql.exec(`CREATE TABLE IF NOT EXISTS sync_output (
      proc_id TEXT NOT NULL, part TEXT NOT NULL, seq INTEGER NOT NULL, bytes BLOB NOT NULL,
      PRIMARY KEY (proc_id, part, seq))`);
  }

  output(stream: OutputStream, bytes: Uint8Array): void {
    if (stream === 'pty') return;
    this.keep('output', bytes);
    this.keep(stream, bytes);
  }

  end(outcome: ProcOutcome): void {
    this.outcome = outcome;
    if (outcome.kind === 'error') this.state.error = outcome.message;
    // The computer dropped output past the limit itself (agents of protocol 1.3).
    if (outcome.kind === 'exit' && outcome.exit.truncated) this.state.truncated = true;
    for (const wake of this.waiters.splice(0)) wake(outcome);
  }

  /** Stores what came since the last commit, one row per part: acknowledged output is never needed from the agent again. */
  commit(row: ProcRow): void {
    for (const part of PARTS) {
      const chunks = this.pending[part];
      if (!chunks.length) continue;
      const bytes = join(chunks);
      this.pending[part] = [];
      this.sql.exec('INSERT INTO sync_output (proc_id, part, seq, bytes) VALUES (?, ?, ?, ?)', row.proc_id, part, this.rows[part]++, bytes);
    }
    row.sink_state = { ...row.sink_state, ...this.state, kept: { ...this.kept }, rows: { ...this.rows } };
  }

  dispose(): void {
    // Nothing stored, nothing to delete (and no write to wait for).
    if (Object.values(this.rows).some((n) => n > 0)) this.sql.exec('DELETE FROM sync_output WHERE proc_id = ?', this.row.proc_id);
  }

  claimed(): boolean {
    return this.requested();
  }

  /**
   * A result its request took is kept as long as any log (a replay of the
   * answer comes from the idempotency record); one nobody was waiting for
   * when it ended (the request gave up: 504) a day, for a retry with the key.
   */
  keepFor(): number {
    return this.requested() ? LOG_RETENTION_MS : UNCLAIMED_RESULT_MS;
  }

  /** The command's end, waiting for it up to `until` (epoch ms); null when it has not ended by then. */
  async ended(until: number): Promise<ProcOutcome | null> {
    if (this.outcome) return this.outcome;
    const left = until - Date.now();
    if (left <= 0) return null;
    return new Promise<ProcOutcome | null>((resolve) => {
      const timer = setTimeout(() => {
        const at = this.waiters.indexOf(wake);
        if (at >= 0) this.waiters.splice(at, 1);
        resolve(null);
      }, left);
      const wake = (o: ProcOutcome) => {
        clearTimeout(timer);
        resolve(o);
      };
      this.waiters.push(wake);
    });
  }

  /** What the command wrote, from storage (everything is committed by the time it has ended). */
  result(outcome: Extract<ProcOutcome, { kind: 'exit' }>): SyncExecResult {
    const text: Record<Part, string> = { output: '', stdout: '', stderr: '' };
    for (const part of PARTS) {
      // Read from storage only what was stored (a command kept in memory stored nothing).
      const rows = this.rows[part]
        ? this.sql.exec<{ bytes: ArrayBuffer }>('SELECT bytes FROM sync_output WHERE proc_id = ? AND part = ? ORDER BY seq', this.row.proc_id, part).toArray()
        : [];
      const chunks = [...rows.map((r) => new Uint8Array(r.bytes)), ...this.pending[part]];
      text[part] = chunks.length ? decoder().decode(join(chunks)) : '';
    }
    return {
      ...text,
      exit_code: outcome.exit.exit_code,
      timed_out: outcome.exit.timed_out,
      truncated: this.state.truncated === true,
      duration_ms: Math.round(outcome.exit.duration_ms),
    };
  }

  /** Whether an agent ever confirmed the process (an unconfirmed one that ended never started). */
  get confirmed(): boolean {
    return this.row.sink_state.unconfirmed !== true;
  }

  /** The fingerprint the command was started with. */
  get fingerprint(): string {
    return this.state.fingerprint;
  }

  private keep(part: Part, bytes: Uint8Array): void {
    const room = this.state.max_output_bytes - this.kept[part];
    if (bytes.byteLength > room) this.state.truncated = true;
    const take = bytes.byteLength <= room ? bytes : bytes.subarray(0, Math.max(0, room));
    if (!take.byteLength) return;
    // A copy: the frame's buffer is not ours to keep.
    this.pending[part].push(take.slice());
    this.kept[part] += take.byteLength;
  }
}

export class SyncExecs {
  /** Commands a request is waiting on now, with how many requests. */
  private readonly requests = new Map<string, number>();

  constructor(
    private readonly sql: SqlStorage,
    private readonly procs: ProcManager,
    private readonly stdin: StdinPumps,
  ) {
    SyncExecSink.init(sql);
  }

  sink(row: ProcRow): ProcSink {
    return new SyncExecSink(this.sql, row, () => (this.requests.get(row.proc_id) ?? 0) > 0);
  }

  /** Counts a request waiting on a command, from before it starts until it has its answer. */
  private async waitingOn<T>(procId: string, work: () => Promise<T>): Promise<T> {
    this.requests.set(procId, (this.requests.get(procId) ?? 0) + 1);
    try {
      return await work();
    } finally {
      const n = (this.requests.get(procId) ?? 1) - 1;
      if (n > 0) this.requests.set(procId, n);
      else this.requests.delete(procId);
    }
  }

  /**
   * Runs a command to its end (or its request's deadline) and answers its
   * result. A retry of a keyed command answers that command's result even if
   * the computer stopped since; `mayStart` says whether a new one may start.
   */
  async run(orgId: string, p: SyncExecParams, mayStart: () => Result<unknown>): Promise<Result<SyncExecResult>> {
    // Only a keyed command can be asked for again, so only it needs telling apart from another.
    const fingerprint = p.key ? await sha256Hex(`${p.command}\u0000${p.stdin ?? ''}\u0000${p.timeout_s}`) : '';
    let procId = p.key ? (await sha256Hex(`sync\u0000${orgId}\u0000${p.key}`)).slice(0, 32) : newProcId();
    const earlier = p.key ? this.procs.row(procId) : null;
    if (earlier?.kind === 'sync' && earlier.org_id === orgId) {
      const sink = this.procs.sink(procId) as SyncExecSink;
      // A retry of the same command: its result, whether it is still running or long done; never a second run.
      if (sink.fingerprint === fingerprint) return this.waitingOn(procId, () => this.await(earlier, sink, Math.max(Date.now(), this.deadline(earlier)) + RESULT_GRACE_MS));
    }
    // The key named another command once (its record outlived the key's 24 h): this is a new one.
    if (earlier) procId = newProcId();
    const may = mayStart();
    if (!may.ok) return may;

    const id = procId;
    return this.waitingOn(id, () => this.start(orgId, id, p, fingerprint));
  }

  private async start(orgId: string, procId: string, p: SyncExecParams, fingerprint: string): Promise<Result<SyncExecResult>> {
    // The computer sends no more of a stream than is kept here (older agents ignore the limit; the sink keeps its own).
    // A short command's end comes with the start's answer (one message less), unless it reads stdin, which is sent after that answer.
    const params: ProcStartParams = {
      proc_id: procId, argv: ['/bin/bash', '-c', p.command], timeout_s: p.timeout_s, stdin: p.stdin !== undefined, output_limit: p.max_output_bytes,
      ...(p.stdin === undefined && { wait_exit_ms: WAIT_EXIT_MS }),
    };
    const state: SyncState = { max_output_bytes: p.max_output_bytes, timeout_s: p.timeout_s, fingerprint };
    // Kept in memory while all goes well (ProcManager stores it when a drop or its size needs that).
    const started = await this.procs.start('sync', orgId, params, { ...state }, { keepIfUnanswered: true, volatile: true });
    if (!started.ok) return started;
    if (p.stdin !== undefined) {
      this.stdin.write(procId, new TextEncoder().encode(p.stdin));
      this.stdin.end(procId);
    }
    const row = started.value;
    return this.await(row, this.procs.sink(procId) as SyncExecSink, this.deadline(row));
  }

  /** When a request for this command stops waiting: its timeout after its start, plus the grace. */
  private deadline(row: ProcRow): number {
    return row.created_at + (row.sink_state as unknown as SyncState).timeout_s * 1000 + RESULT_GRACE_MS;
  }

  private async await(row: ProcRow, sink: SyncExecSink, until: number): Promise<Result<SyncExecResult>> {
    const outcome = await sink.ended(until);
    if (!outcome) {
      // Nobody may be waiting when it ends: it is stored, and its result then kept for a retry with the same key (SyncExecSink.keepFor).
      this.procs.persist(row);
      return fail('RESULT_PENDING', "the command started, but the computer's host agent went away and has not come back to report how it ended; retry with the same Idempotency-Key to get its result without running it again");
    }
    const answer: Result<SyncExecResult> = outcome.kind === 'error' ? fail(...failureOf(outcome.message, sink.confirmed)) : ok(sink.result(outcome));
    this.procs.doneWith(row);
    return answer;
  }

}

/** How a command that ended without an exit is answered. */
function failureOf(message: string, confirmed: boolean): [ErrorCode, string] {
  if (!confirmed) return ['AGENT_UNAVAILABLE', "the command did not start: the computer's host agent went away before it could; it is safe to run it again"];
  if (/computer is (stopped|restarting)/.test(message)) return ['COMPUTER_NOT_RUNNING', message];
  return ['AGENT_ERROR', message];
}
