/**
 * HostTools on a tenant host's object: commands are the host's jobs (the same
 * records, process groups, timeouts and secret masking as POST …/exec),
 * files its file operations. A host whose agent is away is waited for, up to
 * the jobs' lost-host grace, before the call fails as host_lost; a command
 * already started is found again by its job id (remembered before waiting on
 * it), so a session picked up after eviction waits for the same process
 * instead of starting a second one.
 */
import type { Result } from '../../schema/errors.ts';
import type { FsEntry } from '../../schema/protocol.ts';
import type { CommandResult, HostFailure, HostTools } from './tools.ts';
import { sleep } from './abortable-wait.ts';

/*
 * The host object's shapes as this module reads them (host/jobs.ts JobSpec,
 * host/job-table.ts JobRecord, host/tenant-host.ts HostRef), written out so the
 * module stays free of the Workers runtime's types and runs in Node tests.
 */
interface HostRef {
  id: string;
  org_id: string;
}
interface JobSpec {
  command: string;
  args: string[] | null;
  env: Record<string, string>;
  cwd: string | null;
  timeout_s: number;
}
/** What a job's record says, of what a session needs. */
export interface JobRecord {
  id: string;
  status: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
  exit_code: number | null;
  signal: number | null;
  reason: string | null;
  error: string | null;
  stdout: string;
  stderr: string;
  truncated: boolean;
}

/** The host object's RPC methods a session uses. */
export interface HostRpc {
  runJob(ref: HostRef, spec: JobSpec, waitMs: number): Promise<Result<JobRecord>>;
  waitJob(ref: HostRef, jobId: string, ms: number): Promise<JobRecord | null>;
  cancelJob(ref: HostRef, jobId: string): Promise<Result<JobRecord>>;
  fsList(ref: HostRef, path: string): Promise<Result<{ path: string; entries: FsEntry[]; truncated: boolean }>>;
  fsReadText(ref: HostRef, path: string, maxBytes: number): Promise<Result<{ path: string; content: string; size: number; truncated: boolean }>>;
  fsWriteText(ref: HostRef, path: string, content: string): Promise<Result<{ path: string; bytes: number }>>;
}

/** Where the job of the command in flight is remembered (the session's storage). */
export interface InflightJob {
  get(): string | null;
  set(jobId: string | null): void;
}

export interface HostJobToolsOptions {
  /** How long a host may be away before a call fails as host_lost. */
  graceMs: number;
  /** How often an absent host is asked again. */
  retryMs?: number;
}

/** Exit code of a command stopped at its timeout (as `timeout(1)` reports it). */
const TIMED_OUT_EXIT = 124;
/** A cancelled command's process group gets this long to be gone before the session moves on anyway. */
const CANCEL_WAIT_MS = 20_000;
/** Slices a command is waited on in (one RPC each). */
const WAIT_SLICE_MS = 30_000;
const AWAY_CODES = new Set(['HOST_NOT_CONNECTED', 'AGENT_UNAVAILABLE']);

const ended = (j: JobRecord) => j.status !== 'queued' && j.status !== 'running';

/** `p`, or null as soon as `signal` aborts. */
function orAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T | null> {
  if (signal.aborted) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const stop = () => resolve(null);
    signal.addEventListener('abort', stop, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', stop);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', stop);
        reject(e);
      },
    );
  });
}

export function hostJobTools(rpc: HostRpc, ref: HostRef, inflight: InflightJob, opts: HostJobToolsOptions): HostTools {
  const retryMs = opts.retryMs ?? 1000;

  /** Runs `call` until the host answers it, waiting out an absent host up to the grace. */
  async function withHost<T>(call: () => Promise<Result<T>>, signal: AbortSignal): Promise<T | HostFailure> {
    let awaySince: number | null = null;
    for (;;) {
      const r = await call();
      if (r.ok) return r.value;
      if (!AWAY_CODES.has(r.code)) return { failure: r.code === 'NOT_FOUND' ? 'not_found' : 'failed', message: r.message };
      awaySince ??= Date.now();
      if (Date.now() - awaySince >= opts.graceMs) return { failure: 'host_lost', message: `the host was away longer than ${Math.round(opts.graceMs / 1000)} s: ${r.message}` };
      if (!(await sleep(retryMs, signal))) return { failure: 'failed', message: 'stopped' };
    }
  }

  async function waitEnd(jobId: string, signal: AbortSignal): Promise<JobRecord | HostFailure> {
    for (;;) {
      const job = await orAbort(rpc.waitJob(ref, jobId, WAIT_SLICE_MS), signal);
      if (job === null && signal.aborted) {
        // Stopped: the whole process group goes, and the session moves on once it has.
        await rpc.cancelJob(ref, jobId);
        const deadline = Date.now() + CANCEL_WAIT_MS;
        let last = await rpc.waitJob(ref, jobId, CANCEL_WAIT_MS);
        while (last && !ended(last) && Date.now() < deadline) last = await rpc.waitJob(ref, jobId, deadline - Date.now());
        return { failure: 'failed', message: 'stopped' };
      }
      if (!job) return { failure: 'failed', message: 'the job is no longer known to the host' };
      if (ended(job)) return job;
    }
  }

  return {
    async runCommand(a, signal): Promise<CommandResult | HostFailure> {
      let jobId = inflight.get();
      if (!jobId) {
        const spec: JobSpec = { command: a.command, args: null, env: {}, cwd: a.cwd ?? null, timeout_s: a.timeout_s };
        const started = await withHost(() => rpc.runJob(ref, spec, 0), signal);
        if ('failure' in started) return started;
        jobId = started.id;
        inflight.set(jobId);
      }
      try {
        const job = await waitEnd(jobId, signal);
        if ('failure' in job) return job;
        if (job.reason === 'host_lost' || job.reason === 'host_revoked') return { failure: 'host_lost', message: job.error ?? 'the host went away while the command ran' };
        if (job.reason === 'start_failed' || job.reason === 'agent_unreachable') return { failure: 'failed', message: job.error ?? 'the command could not be started' };
        const timedOut = job.reason === 'timeout';
        const exit = timedOut ? TIMED_OUT_EXIT : (job.exit_code ?? (job.signal !== null ? 128 + job.signal : 1));
        return { exit_code: exit, stdout: job.stdout, stderr: job.stderr, timed_out: timedOut, truncated: job.truncated };
      } finally {
        inflight.set(null);
      }
    },
    readFile: (a, signal) => withHost(() => rpc.fsReadText(ref, a.path, a.max_bytes), signal),
    async writeFile(a, signal) {
      const r = await withHost(() => rpc.fsWriteText(ref, a.path, a.content), signal);
      return 'failure' in r ? r : { bytes: r.bytes };
    },
    async listDirectory(a, signal) {
      const r = await withHost(() => rpc.fsList(ref, a.path), signal);
      return 'failure' in r ? r : { entries: r.entries.map((e) => ({ name: e.name, is_dir: e.is_dir, size: e.size })) };
    },
  };
}
