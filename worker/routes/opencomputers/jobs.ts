/**
 * Jobs on a tenant host (spec/05, Jobs). POST runs a command on the machine:
 * with `args` the command is the program and they go to it without a shell,
 * without them it is a shell command line. By default the answer comes when
 * the job ends; `"wait": false` or `Prefer: respond-async` answers 202 at
 * once. Jobs are listed newest first, fetched, streamed (SSE in the page's
 * shape) and cancelled (DELETE → 204). Outcomes: docs/opencomputers.md.
 */
import { CreateJob, JOB_DEFAULT_TIMEOUT_S, JOB_MAX_TIMEOUT_S } from '../../../schema/api-opencomputers.ts';
import { ApiError, unwrap } from '../../../schema/errors.ts';
import type { JobRow } from '../../../durable-objects/host/job-table.ts';
import { isoNow, looksLikeId } from '../../http/ids.ts';
import { pageInfo, readPage } from '../../http/pagination.ts';
import { json } from '../../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { hostOpRequest, hostStub, loadTenantHost, refOf, single } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

const BASE = `${OC_BASE}/hosts/:id/exec`;
/** A job's answer may wait this much past its timeout (the agent kills it at the timeout, plus its grace). */
const WAIT_SLACK_MS = 30_000;

export const clampJobTimeout = (t: number | undefined) => Math.min(t ?? JOB_DEFAULT_TIMEOUT_S, JOB_MAX_TIMEOUT_S);

const iso = (ms: number | null) => (ms === null ? null : isoNow(ms));

/** A job as the page shows it, with its reason, timing and whether its recorded output was cut. */
export function jobView(job: JobRow, hostId: string) {
  const end = job.completed_at ?? null;
  return {
    id: job.id,
    host_id: hostId,
    status: job.status,
    command: job.command,
    args: job.args ?? [],
    cwd: job.cwd,
    timeout: job.timeout_s,
    exit_code: job.exit_code,
    signal: job.signal,
    reason: job.reason,
    error: job.error,
    stdout: job.stdout,
    stderr: job.stderr,
    truncated: job.truncated,
    created_at: isoNow(job.created_at),
    updated_at: isoNow(job.updated_at),
    started_at: iso(job.started_at),
    completed_at: iso(end),
    duration_ms: job.started_at !== null && end !== null ? end - job.started_at : null,
  };
}

function requireJobId(raw: string): string {
  if (!looksLikeId(raw)) throw new ApiError('INVALID_ID', 'invalid job id');
  return raw.toLowerCase();
}

/** `Prefer: respond-async` (RFC 7240), among any other preferences. */
const prefersAsync = (request: Request) =>
  (request.headers.get('prefer') ?? '')
    .split(',')
    .some((p) => p.trim().toLowerCase().split(';')[0].trim() === 'respond-async');

const envRecord = (entries: string[] = []) => Object.fromEntries(entries.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));

async function jobOf(c: RouteContext) {
  const host = await loadTenantHost(c.env, c.principal, c.params.id);
  const jobId = requireJobId(c.params.job_id);
  const job = await hostStub(c.env, host.id).job(refOf(host), jobId);
  if (!job) throw new ApiError('NOT_FOUND', 'job not found');
  return { host, job };
}

export const JOB_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: BASE,
    auth: 'tenant',
    body: CreateJob,
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const timeout_s = clampJobTimeout(c.body.timeout);
      const wait = c.body.wait ?? !prefersAsync(c.request);
      const spec = { command: c.body.command, args: c.body.args ?? null, env: envRecord(c.body.env), cwd: c.body.cwd ?? null, timeout_s };
      const job = unwrap(await hostStub(c.env, host.id).runJob(refOf(host), spec, wait ? timeout_s * 1000 + WAIT_SLACK_MS : 0));
      const ended = job.status !== 'queued' && job.status !== 'running';
      return json(single(jobView(job, host.id)), wait && ended ? 200 : 202);
    },
  }),
  route({
    method: 'GET',
    path: BASE,
    auth: 'tenant',
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const page = readPage(c.query);
      const { jobs, total } = await hostStub(c.env, host.id).jobs(refOf(host), page.page_size, page.offset);
      return json({ data: jobs.map((j) => jobView(j, host.id)), meta: { total, page: page.page, per_page: page.page_size }, page: pageInfo(page, total) });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:job_id`,
    auth: 'tenant',
    handler: async (c) => {
      const { host, job } = await jobOf(c);
      return json(single(jobView(job, host.id)));
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:job_id/stream`,
    auth: 'tenant',
    handler: async (c) => {
      const { host, job } = await jobOf(c);
      return hostStub(c.env, host.id).fetch(hostOpRequest(c, refOf(host), 'job-stream', { headers: { 'x-hangar-job-id': job.id } }));
    },
  }),
  route({
    method: 'DELETE',
    path: `${BASE}/:job_id`,
    auth: 'tenant',
    handler: async (c) => {
      const { host, job } = await jobOf(c);
      unwrap(await hostStub(c.env, host.id).cancelJob(refOf(host), job.id));
      return new Response(null, { status: 204 });
    },
  }),
];
