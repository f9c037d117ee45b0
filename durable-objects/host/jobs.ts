/**
 * Jobs of a tenant host (spec/05, Jobs): a command run on the machine itself
 * as a streamed process of the host's ProcManager, with a record that
 * outlives its process (job-table.ts) and an event stream (job-sink.ts).
 * Starting answers once the agent has the process running (or could not
 * start it); a caller that waits is woken when the record is final.
 */
import { fail, ok, type Result } from '../../schema/errors.ts';
import type { ProcStartParams } from '../../schema/protocol.ts';
import { ApiError } from '../../schema/errors.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import type { AgentLink } from '../agent-link.ts';
import { hangUp } from '../exec/hang-up.ts';
import { lastEventId } from '../sse-hub.ts';
import type { ProcManager } from '../exec/proc-manager.ts';
import type { ProcRow } from '../exec/proc-table.ts';
import { JOB_LOG_RETENTION_MS, JobSink, type JobSinkState } from './job-sink.ts';
import { JobTable, type JobRow } from './job-table.ts';
import type { Viewer } from '../credentials/held-credentials.ts';
import type { SecretSet } from './secret-mask.ts';

export { JOB_LOG_RETENTION_MS };
/** Jobs running on one host at once, at most; past it a new one is refused (429) until some end. */
export const MAX_RUNNING_JOBS = 100;

export interface JobSpec {
  command: string;
  /** Present: `command` is the program and these its arguments, no shell. */
  args: string[] | null;
  env: Record<string, string>;
  cwd: string | null;
  timeout_s: number;
}

/** What the jobs module needs of its host. */
export interface JobsHost {
  procs(): ProcManager;
  link: AgentLink;
  secrets(): SecretSet;
  /** A job started or ended (host events). */
  event(type: 'job_started' | 'job_ended', job: JobRow): void;
}

const JOB_NOT_FOUND = 'job not found';

export class Jobs {
  readonly table: JobTable;
  private readonly waiters = new Map<string, Array<() => void>>();

  constructor(
    private readonly sql: SqlStorage,
    private readonly host: JobsHost,
  ) {
    this.table = new JobTable(sql);
  }

  sink(row: ProcRow): JobSink {
    return new JobSink(
      this.sql,
      row,
      this.table,
      () => this.host.secrets(),
      (jobId) => this.sealed(jobId),
      (procId) => this.host.procs().release(procId),
    );
  }

  /**
   * Records a job and starts its process. A job the agent could not start is
   * recorded as failed and returned; an agent that went away before answering
   * is a failure to report (502), the job recorded as failed too.
   */
  async start(orgId: string, spec: JobSpec): Promise<Result<JobRow>> {
    if (this.table.running().length >= MAX_RUNNING_JOBS) return fail('RATE_LIMITED', `this host runs ${MAX_RUNNING_JOBS} jobs already; start more when some have ended`);
    const id = crypto.randomUUID();
    const procId = id.replaceAll('-', '');
    this.table.insert({ id, proc_id: procId, org_id: orgId, command: spec.command, args: spec.args, cwd: spec.cwd, timeout_s: spec.timeout_s, status: 'queued', created_at: Date.now() });
    const params: ProcStartParams = {
      proc_id: procId,
      ...(spec.args ? { argv: [spec.command, ...spec.args] } : { command: spec.command }),
      ...(spec.cwd !== null && { cwd: spec.cwd }),
      ...(Object.keys(spec.env).length > 0 && { env: spec.env }),
      timeout_s: spec.timeout_s,
      stdin: false,
    };
    const procs = this.host.procs();
    const state: JobSinkState = { job_id: id };
    // The process row exists once start() has been called (before its first await), so the
    // sink made now puts `started` first in the log, ahead of any output.
    const starting = procs.start('job', orgId, params, state as unknown as Record<string, unknown>);
    procs.sink(procId);
    this.host.event('job_started', this.table.get(id)!);
    const r = await starting;
    if (!r.ok && r.code === 'AGENT_UNAVAILABLE') return r;
    // Unless it has already ended (an exit may overtake the start's answer).
    if (r.ok) this.table.update(id, { status: 'running', started_at: Date.now() }, 'queued');
    return ok(this.table.get(id)!);
  }

  get(id: string): JobRow | null {
    return this.table.get(id);
  }

  /** Waits until the job's record is final, or `ms` passed. */
  wait(id: string, ms: number): Promise<void> {
    const job = this.table.get(id);
    if (!job || (job.status !== 'queued' && job.status !== 'running')) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.set(id, [...(this.waiters.get(id) ?? []), done]);
    });
  }

  /**
   * Cancels a running job: SIGTERM to its whole process group, SIGKILL after
   * the grace (the agent kills what is left of the group). Remembered when the
   * agent is away and sent when it is back. Ended jobs stay as they are.
   */
  async cancel(id: string): Promise<Result<JobRow>> {
    const job = this.table.get(id);
    if (!job) return fail('NOT_FOUND', JOB_NOT_FOUND);
    if (job.status !== 'queued' && job.status !== 'running') return ok(job);
    this.table.update(id, { cancel_requested: true });
    if (this.host.link.socket()) await hangUp(this.host.link, this.host.procs(), job.proc_id, 'TERM');
    return ok(this.table.get(id)!);
  }

  /** After the agent is back: cancels asked for while it was away go out now. */
  async agentResumed(): Promise<void> {
    for (const job of this.table.running()) {
      if (job.cancel_requested) await hangUp(this.host.link, this.host.procs(), job.proc_id, 'TERM');
    }
  }

  /** GET …/exec/{job_id}/stream: the job's events after Last-Event-ID, then live ones until `done`. */
  stream(id: string, request: Request, requestId: string, open: () => Viewer): Response {
    const job = this.table.get(id);
    if (!job) return errorResponse(new ApiError('NOT_FOUND', JOB_NOT_FOUND), requestId);
    const sink = this.host.procs().sink(job.proc_id);
    if (!(sink instanceof JobSink)) {
      const gone = `the job's event stream is kept ${JOB_LOG_RETENTION_MS / 60_000} minutes after it ends; GET the job for its recorded output`;
      return errorResponse(new ApiError('NOT_FOUND', gone), requestId);
    }
    const after = lastEventId(request);
    // A viewer that already has `done` is told not to reconnect.
    if (sink.log.done() && after >= sink.log.lastSeq()) return new Response(null, { status: 204 });
    const viewer = open();
    return sink.hub.subscribe(after, viewer.signal, viewer.untrack);
  }

  private sealed(jobId: string): void {
    const job = this.table.get(jobId);
    if (job) this.host.event('job_ended', job);
    for (const wake of this.waiters.get(jobId) ?? []) wake();
    this.waiters.delete(jobId);
  }
}
