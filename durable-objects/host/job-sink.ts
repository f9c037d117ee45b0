/**
 * The sink of a job on a tenant host: its output as events of the page's
 * shape (started, stdout, stderr, then exit or error, then done), numbered
 * and kept from the first byte so a late viewer gets all of it, and the
 * job's record (status, exit, the first JOB_MAX_RECORD_BYTES characters of
 * each stream). Secrets' values are masked before either sees them, across
 * chunk boundaries. Connected viewers are never outrun (viewer-hold.ts); with
 * none connected the job runs on and the log keeps its last MAX_LOG_BYTES.
 */
import { JOB_MAX_RECORD_BYTES } from '../../schema/api-opencomputers.ts';
import type { OutputStream } from '../../schema/protocol.ts';
import { isoNow } from '../../worker/http/ids.ts';
import { SseHub } from '../sse-hub.ts';
import { EventLog } from '../exec/event-log.ts';
import type { ProcOutcome, ProcSink } from '../exec/proc-manager.ts';
import type { ProcRow } from '../exec/proc-table.ts';
import { typedEventFormat, type TypedItem } from '../exec/typed-events.ts';
import { Utf8Chunks } from '../exec/utf8-chunks.ts';
import { VIEWER_LIMITS, ViewerHold } from '../exec/viewer-hold.ts';
import type { JobReason, JobStatus, JobTable, OutputStreamName } from './job-table.ts';
import type { SecretSet } from './secret-mask.ts';

const STREAMS: OutputStreamName[] = ['stdout', 'stderr'];
/** An ended job's event stream stays readable this long (its record stays longer: JOBS_KEPT). */
export const JOB_LOG_RETENTION_MS = 60 * 60_000;

/** What the sink keeps in its process row, so an evicted object goes on mid-character and mid-secret. */
export interface JobSinkState {
  job_id: string;
  utf8?: Record<OutputStreamName, number[]>;
  /** The end of the last chunk, held back because a secret's value may start there. */
  held?: Record<OutputStreamName, string>;
  /** Characters of each stream on the record so far. */
  recorded?: Record<OutputStreamName, number>;
  truncated?: boolean;
  /** The job has ended and its record is final. */
  sealed?: boolean;
}

/** How a job's process ended, as the job shows it (docs/opencomputers.md). */
export function jobOutcome(outcome: ProcOutcome, cancelRequested: boolean): { status: JobStatus; reason: JobReason | null; exit_code: number | null; signal: number | null; error: string | null } {
  if (outcome.kind === 'error') {
    return {
      status: cancelRequested ? 'cancelled' : 'failed',
      reason: cancelRequested ? 'cancelled' : ((outcome.reason as JobReason | undefined) ?? 'host_lost'),
      exit_code: null,
      signal: null,
      error: outcome.message,
    };
  }
  const { exit_code, signal, timed_out } = outcome.exit;
  if (cancelRequested) return { status: 'cancelled', reason: 'cancelled', exit_code, signal, error: null };
  if (timed_out) return { status: 'failed', reason: 'timeout', exit_code: 124, signal, error: null };
  if (exit_code === 0) return { status: 'completed', reason: null, exit_code, signal, error: null };
  return { status: 'failed', reason: signal !== null ? 'signal' : 'exit_code', exit_code, signal, error: null };
}

export class JobSink implements ProcSink {
  readonly log: EventLog<TypedItem>;
  readonly hub: SseHub;
  private readonly hold: ViewerHold;
  private readonly state: JobSinkState;
  private readonly utf8: Record<OutputStreamName, Utf8Chunks>;
  private readonly held: Record<OutputStreamName, string>;
  private readonly recorded: Record<OutputStreamName, number>;
  /** Recorded output not yet written to the job's row. */
  private pieces: { stream: OutputStreamName; text: string }[] = [];
  private ended: ProcOutcome | null = null;

  constructor(
    sql: SqlStorage,
    row: ProcRow,
    private readonly jobs: JobTable,
    /** The secrets to mask now. */
    private readonly secrets: () => SecretSet,
    /** The job's record is final (resolves waiters, tells the host's events). */
    private readonly onSealed: (jobId: string) => void,
    release: (procId: string) => void,
  ) {
    this.state = { ...(row.sink_state as unknown as JobSinkState) };
    this.log = new EventLog(sql, row.proc_id, row.status === 'ended', { format: typedEventFormat('job_id', this.state.job_id) });
    this.hub = new SseHub(this.log, () => this.hold.moved());
    this.hold = new ViewerHold(this.hub, () => this.hub.anyBehind(VIEWER_LIMITS), () => release(row.proc_id));
    this.utf8 = { stdout: new Utf8Chunks(this.state.utf8?.stdout), stderr: new Utf8Chunks(this.state.utf8?.stderr) };
    this.held = { stdout: '', stderr: '', ...this.state.held };
    this.recorded = { stdout: 0, stderr: 0, ...this.state.recorded };
    if (this.log.lastSeq() === 0 && row.status === 'running') {
      const job = jobs.get(this.state.job_id);
      this.record([['started', isoNow(), { command: job?.command, args: job?.args ?? [], cwd: job?.cwd ?? null, timeout: job?.timeout_s }]]);
    }
  }

  get jobId(): string {
    return this.state.job_id;
  }

  output(stream: OutputStream, bytes: Uint8Array): void {
    if (stream === 'pty') return;
    this.take(stream, this.utf8[stream].push(bytes), false);
  }

  end(outcome: ProcOutcome): void {
    for (const stream of STREAMS) this.take(stream, this.utf8[stream].flush(), true);
    this.ended = outcome;
    const job = this.jobs.get(this.state.job_id);
    const o = jobOutcome(outcome, job?.cancel_requested ?? false);
    const last: TypedItem =
      outcome.kind === 'exit'
        ? ['exit', isoNow(), { exit_code: o.exit_code, signal: o.signal, timed_out: outcome.exit.timed_out, duration_ms: Math.round(outcome.exit.duration_ms) }]
        : ['error', isoNow(), { reason: o.reason, message: outcome.message }];
    this.record([last, ['done', isoNow(), { status: o.status, exit_code: o.exit_code, reason: o.reason }]], true);
  }

  commit(row: ProcRow): void {
    this.log.flush();
    if (this.pieces.length) {
      this.jobs.appendOutput(this.state.job_id, this.pieces);
      this.pieces = [];
    }
    if (this.ended && !this.state.sealed) {
      const job = this.jobs.get(this.state.job_id);
      const o = jobOutcome(this.ended, job?.cancel_requested ?? false);
      this.jobs.update(this.state.job_id, { ...o, completed_at: Date.now(), truncated: this.state.truncated ?? false });
      this.jobs.seal(this.state.job_id);
      this.state.sealed = true;
      this.onSealed(this.state.job_id);
    }
    row.sink_state = {
      ...this.state,
      utf8: { stdout: this.utf8.stdout.tail(), stderr: this.utf8.stderr.tail() },
      held: { ...this.held },
      recorded: { ...this.recorded },
    };
  }

  keepFor(): number {
    return JOB_LOG_RETENTION_MS;
  }

  holds(): boolean {
    return this.hold.holds();
  }

  dispose(): void {
    this.hold.stop();
    this.hub.closeAll();
    this.log.drop();
  }

  /** Masks decoded text (with what was held back before it) and passes on what may be shown. */
  private take(stream: OutputStreamName, text: string, final: boolean): void {
    const { shown, held } = this.secrets().mask(this.held[stream] + text, final);
    this.held[stream] = held;
    if (!shown) return;
    this.keep(stream, shown);
    this.record([[stream, isoNow(), shown]]);
  }

  /** The record keeps each stream's first JOB_MAX_RECORD_BYTES characters; the stream has them all. */
  private keep(stream: OutputStreamName, text: string): void {
    const room = JOB_MAX_RECORD_BYTES - this.recorded[stream];
    if (room <= 0) {
      this.state.truncated = true;
      return;
    }
    const kept = text.length > room ? text.slice(0, room) : text;
    if (kept.length < text.length) this.state.truncated = true;
    this.recorded[stream] += kept.length;
    this.pieces.push({ stream, text: kept });
  }

  private record(items: TypedItem[], terminal = false): void {
    const first = this.log.append(items, terminal);
    if (this.hub.size) this.hub.publish(this.log.format.text(items, first), this.log.lastSeq());
  }
}
