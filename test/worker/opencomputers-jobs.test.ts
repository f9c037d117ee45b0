import { env, runDurableObjectAlarm } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { JOB_MAX_RECORD_BYTES } from '../../schema/api-opencomputers.ts';
import { createTenant, expectError, expectJson, tenantFetch } from './helpers.ts';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { HostModePeer, OC, registerTenantHost } from './host-mode-peer.ts';
import { readSse as readRaw } from '../e2e/sse.ts';

/** The stream's events with their data parsed (the page's `{type, job_id, data, timestamp}`), up to `stopAfter`. */
async function readSse(res: Response, stopAfter = Infinity) {
  return (await readRaw(res, stopAfter)).map((m) => ({ ...m, data: JSON.parse(m.data) as Record<string, unknown> }));
}

useAgentPeers();

type Job = Record<string, unknown> & { id: string; status: string; stdout: string; stderr: string };

async function onlineHost() {
  const t = await createTenant();
  const h = await registerTenantHost(t.apiKey);
  const peer = await HostModePeer.online(h.key);
  const base = `${OC}/hosts/${h.id}`;
  const api = (path: string, init: Parameters<typeof tenantFetch>[2] = {}) => tenantFetch(t.apiKey, `${base}${path}`, init);
  return { t, h, peer, api, base };
}

/** Scripts a process: waits for its start, then writes `out` and exits with `code`. */
async function runOn(peer: HostModePeer, script: (procId: string) => void | Promise<void>) {
  const start = await peer.take('proc.start');
  await script(start.params.proc_id);
  return start;
}

const getJob = async (api: (p: string) => Promise<Response>, id: string) => expectJson<Job>(await api(`/exec/${id}`), 200);

async function waitJob(api: (p: string) => Promise<Response>, id: string, status: string): Promise<Job> {
  for (let i = 0; i < 300; i++) {
    const j = await getJob(api, id);
    if (j.status === status) return j;
    await sleep(20);
  }
  throw new Error(`job ${id} never became ${status}: ${JSON.stringify(await getJob(api, id))}`);
}

describe('jobs on a tenant host', () => {
  it('a command line runs through the shell; the POST answers when it ends with stdout and stderr apart', async () => {
    const { peer, api, h } = await onlineHost();
    const posted = api('/exec', { method: 'POST', body: { command: 'npm test', env: ['CI=1', 'EMPTY=', 'EQ=a=b'], cwd: 'project' } });
    const start = await runOn(peer, (p) => {
      peer.output(p, 'stdout', 'All tests ');
      peer.output(p, 'stderr', 'warn\n');
      peer.output(p, 'stdout', 'passed.\n');
      peer.exit(p, 0);
    });
    expect(start.params).toMatchObject({ command: 'npm test', cwd: 'project', timeout_s: 60, stdin: false, env: { CI: '1', EMPTY: '', EQ: 'a=b' } });
    expect(start.params.argv).toBeUndefined();
    expect(start.params.shell).toBeUndefined();
    const job = await expectJson<Job>(await posted, 200);
    expect(job).toMatchObject({ host_id: h.id, status: 'completed', command: 'npm test', args: [], exit_code: 0, stdout: 'All tests passed.\n', stderr: 'warn\n', truncated: false, reason: null });
    expect(job.completed_at).toMatch(/Z$/);
    expect(job.id).toBe(start.params.proc_id.replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5'));
    expect(job.data).toMatchObject({ id: job.id, status: 'completed' });
  });

  it('with args the command is the program and the args go to it as they are, without a shell', async () => {
    const { peer, api } = await onlineHost();
    const posted = api('/exec', { method: 'POST', body: { command: 'printf', args: ['%s', '$HOME; rm -rf /'] } });
    const start = await runOn(peer, (p) => peer.exit(p, 0));
    expect(start.params.argv).toEqual(['printf', '%s', '$HOME; rm -rf /']);
    expect(start.params.command).toBeUndefined();
    expect(await expectJson<Job>(await posted, 200)).toMatchObject({ args: ['%s', '$HOME; rm -rf /'], status: 'completed' });
  });

  it('a non-zero exit is failed with its code; a timeout is failed with 124; a long timeout is clamped to the maximum', async () => {
    const { peer, api } = await onlineHost();
    const failed = api('/exec', { method: 'POST', body: { command: 'false' } });
    await runOn(peer, (p) => peer.exit(p, 1));
    expect(await expectJson<Job>(await failed, 200)).toMatchObject({ status: 'failed', exit_code: 1, reason: 'exit_code' });
    const slow = api('/exec', { method: 'POST', body: { command: 'sleep 99', timeout: 999_999 } });
    const start = await runOn(peer, (p) => peer.exit(p, 124, { timed_out: true, signal: 15 }));
    expect(start.params.timeout_s).toBe(3600);
    expect(await expectJson<Job>(await slow, 200)).toMatchObject({ status: 'failed', exit_code: 124, reason: 'timeout', timeout: 3600 });
  });

  it('a command the agent cannot start is a failed job with the reason', async () => {
    const { peer, api } = await onlineHost();
    peer.on('proc.start', () => ({ error: { code: 'BAD_REQUEST', message: 'no such file or directory: nope' } }));
    const job = await expectJson<Job>(await api('/exec', { method: 'POST', body: { command: 'nope', args: [] } }), 200);
    expect(job).toMatchObject({ status: 'failed', reason: 'start_failed', exit_code: null });
    expect(String(job.error)).toContain('no such file or directory: nope');
  });

  it('"wait": false and Prefer: respond-async answer 202 at once with the running job', async () => {
    const { peer, api } = await onlineHost();
    const a = await expectJson<Job>(await api('/exec', { method: 'POST', body: { command: 'sleep 5', wait: false } }), 202);
    expect(a.status).toBe('running');
    const b = await expectJson<Job>(await api('/exec', { method: 'POST', body: { command: 'sleep 5' }, headers: { prefer: 'wait=10, respond-async' } }), 202);
    expect(b.status).toBe('running');
    const [s1, s2] = [await peer.take('proc.start'), await peer.take('proc.start')];
    peer.exit(s1.params.proc_id, 0);
    peer.exit(s2.params.proc_id, 3);
    expect(await waitJob(api, a.id, 'completed')).toMatchObject({ exit_code: 0 });
    expect(await waitJob(api, b.id, 'failed')).toMatchObject({ exit_code: 3 });
  });

  it('a malformed env entry is a 400 naming it, and nothing runs', async () => {
    const { peer, api } = await onlineHost();
    const err = await expectError(await api('/exec', { method: 'POST', body: { command: 'true', env: ['GOOD=1', 'no equals sign'] } }), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toContain('env.1');
    expect(err.error.message).toContain('"no equals sign"');
    await expectError(await api('/exec', { method: 'POST', body: { command: 'true', env: ['1BAD=x'] } }), 400, 'VALIDATION_FAILED');
    await expectError(await api('/exec', { method: 'POST', body: { command: 'true', timeout: 0 } }), 400, 'VALIDATION_FAILED');
    await expectError(await api('/exec', { method: 'POST', body: { command: 'a\u0000b' } }), 400, 'VALIDATION_FAILED');
    expect(peer.requests.filter((r) => r.type === 'proc.start')).toEqual([]);
    expect((await expectJson<{ data: unknown[] }>(await api('/exec'), 200)).data).toEqual([]);
  });

  it('lists jobs newest first, paged', async () => {
    const { peer, api } = await onlineHost();
    const ids: string[] = [];
    for (const c of ['one', 'two', 'three']) {
      const posted = api('/exec', { method: 'POST', body: { command: c } });
      await runOn(peer, (p) => peer.exit(p, 0));
      ids.push((await expectJson<Job>(await posted, 200)).id);
    }
    const all = await expectJson<{ data: Job[]; meta: unknown }>(await api('/exec'), 200);
    expect(all.data.map((j) => j.command)).toEqual(['three', 'two', 'one']);
    expect(all.meta).toEqual({ total: 3, page: 1, per_page: 20 });
    const second = await expectJson<{ data: Job[] }>(await api('/exec?per_page=2&page=2'), 200);
    expect(second.data.map((j) => j.id)).toEqual([ids[0]]);
    await expectError(await api(`/exec/${crypto.randomUUID()}`), 404, 'NOT_FOUND');
    await expectError(await api('/exec/nope'), 400, 'INVALID_ID');
  });
});

describe('jobs when the host is away', () => {
  it('a host whose agent is not connected answers 409 and records nothing', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const err = await expectError(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/exec`, { method: 'POST', body: { command: 'true' } }), 409, 'HOST_NOT_CONNECTED');
    expect(err.error.message).toContain('not connected');
    expect((await expectJson<{ data: unknown[] }>(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/exec`), 200)).data).toEqual([]);
  });

  it('an agent that goes away before answering is a 502', async () => {
    const { peer, api } = await onlineHost();
    peer.on('proc.start', () => {
      peer.close();
      return 'no-reply';
    });
    await expectError(await api('/exec', { method: 'POST', body: { command: 'true' } }), 502, 'AGENT_UNAVAILABLE');
  });

  it('a running job survives the agent socket dropping: the agent comes back, resumes from the stored offsets, and the output is whole', async () => {
    const { h, peer, api } = await onlineHost();
    const job = await expectJson<Job>(await api('/exec', { method: 'POST', body: { command: 'build', wait: false } }), 202);
    const start = await peer.take('proc.start');
    const p = start.params.proc_id;
    peer.output(p, 'stdout', 'first half, ');
    await sleep(50);
    peer.close(1006 - 6, 'network blip');
    const back = await HostModePeer.connect(h.key, { procs: [p] });
    await back.take('welcome');
    const attach = await back.take('proc.attach');
    expect(attach).toMatchObject({ proc_id: p, offsets: { stdout: 12 } });
    back.output(p, 'stdout', 'second half\n', 12);
    back.exit(p, 0);
    const done = await waitJob(api, job.id, 'completed');
    expect(done.stdout).toBe('first half, second half\n');
    // The stream has it once too.
    const events = await readSse(await api(`/exec/${job.id}/stream`));
    expect(events.filter((e) => e.event === 'stdout').map((e) => (e.data as { data: string }).data).join('')).toBe('first half, second half\n');
    // A stray process the object does not run is ended.
    expect(back.requests.filter((r) => r.type === 'proc.signal')).toEqual([]);
  });

  it('a host away longer than the grace fails its running jobs with reason host_lost', async () => {
    const { h, peer, api } = await onlineHost();
    const job = await expectJson<Job>(await api('/exec', { method: 'POST', body: { command: 'long', wait: false } }), 202);
    await peer.take('proc.start');
    peer.close();
    await sleep(1200); // the test grace is 1 s (HOST_LOST_GRACE_S)
    await runDurableObjectAlarm(env.HOST.get(env.HOST.idFromName(h.id)));
    const lost = await waitJob(api, job.id, 'failed');
    expect(lost).toMatchObject({ reason: 'host_lost', exit_code: null });
    const events = await readSse(await api(`/exec/${job.id}/stream`));
    expect(events.map((e) => e.event)).toEqual(['started', 'error', 'done']);
    expect(events[1].data).toMatchObject({ type: 'error', job_id: job.id, data: { reason: 'host_lost' } });
  });

  it('processes the agent reports that the object does not run are ended', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const peer = await HostModePeer.online(h.key, { procs: ['0123456789abcdef0123456789abcdef'] });
    expect(await peer.take('proc.signal')).toMatchObject({ proc_id: '0123456789abcdef0123456789abcdef', signal: 'KILL' });
    expect(await peer.take('proc.forget')).toMatchObject({ proc_id: '0123456789abcdef0123456789abcdef' });
  });
});

describe('job streams', () => {
  it('a viewer who connects after the end gets every event from the first byte, in the page shape, then the stream ends', async () => {
    const { peer, api } = await onlineHost();
    const posted = api('/exec', { method: 'POST', body: { command: 'echo' } });
    await runOn(peer, (p) => {
      peer.output(p, 'stdout', 'a\n');
      peer.output(p, 'stderr', 'b\n');
      peer.exit(p, 2);
    });
    const job = await expectJson<Job>(await posted, 200);
    const res = await api(`/exec/${job.id}/stream`);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const events = await readSse(res);
    expect(events.map((e) => [e.id, e.event])).toEqual([
      ['1', 'started'],
      ['2', 'stdout'],
      ['3', 'stderr'],
      ['4', 'exit'],
      ['5', 'done'],
    ]);
    for (const e of events) expect(e.data).toMatchObject({ type: e.event, job_id: job.id, timestamp: expect.stringMatching(/Z$/) });
    expect(events[1].data).toMatchObject({ data: 'a\n' });
    expect(events[3].data).toMatchObject({ data: { exit_code: 2 } });
    expect(events[4].data).toMatchObject({ data: { status: 'failed', exit_code: 2 } });
  });

  it('Last-Event-ID resumes exactly after the event named, live and after the end; a viewer that has done gets 204', async () => {
    const { peer, api } = await onlineHost();
    const job = await expectJson<Job>(await api('/exec', { method: 'POST', body: { command: 'x', wait: false } }), 202);
    const p = (await peer.take('proc.start')).params.proc_id;
    for (let i = 0; i < 5; i++) peer.output(p, 'stdout', `line ${i}\n`);
    await sleep(100);
    const first = await readSse(await api(`/exec/${job.id}/stream`), 4);
    expect(first.at(-1)?.id).toBe('4');
    const resumedLive = api(`/exec/${job.id}/stream`, { headers: { 'last-event-id': '4' } });
    peer.output(p, 'stdout', 'line 5\n');
    peer.exit(p, 0);
    const rest = await readSse(await resumedLive);
    expect(rest.map((e) => e.id)).toEqual(['5', '6', '7', '8', '9']);
    expect(rest.map((e) => (typeof (e.data as { data: unknown }).data === 'string' ? (e.data as { data: string }).data : e.event))).toEqual([
      'line 3\n',
      'line 4\n',
      'line 5\n',
      'exit',
      'done',
    ]);
    const after = await readSse(await api(`/exec/${job.id}/stream?last_event_id=7`));
    expect(after.map((e) => e.id)).toEqual(['8', '9']);
    expect((await api(`/exec/${job.id}/stream`, { headers: { 'last-event-id': '9' } })).status).toBe(204);
  });

  it('the record keeps the first MiB of each stream and says truncated; the stream has all of it', async () => {
    const { peer, api } = await onlineHost();
    const job = await expectJson<Job>(await api('/exec', { method: 'POST', body: { command: 'yes', wait: false } }), 202);
    const p = (await peer.take('proc.start')).params.proc_id;
    const piece = 'y\n'.repeat(128 * 1024);
    for (let i = 0; i < 5; i++) peer.output(p, 'stdout', piece);
    peer.exit(p, 0);
    const done = await waitJob(api, job.id, 'completed');
    expect(done.truncated).toBe(true);
    expect(done.stdout.length).toBe(JOB_MAX_RECORD_BYTES);
    const events = await readSse(await api(`/exec/${job.id}/stream`));
    expect(events.filter((e) => e.event === 'stdout').map((e) => (e.data as { data: string }).data).join('').length).toBe(piece.length * 5);
  });
});

describe('cancelling a job', () => {
  it('DELETE answers 204, signals TERM to the process group, and the job ends cancelled; a second DELETE changes nothing', async () => {
    const { peer, api } = await onlineHost();
    const job = await expectJson<Job>(await api('/exec', { method: 'POST', body: { command: 'sleep 100', wait: false } }), 202);
    const p = (await peer.take('proc.start')).params.proc_id;
    const r = await api(`/exec/${job.id}`, { method: 'DELETE' });
    expect(r.status).toBe(204);
    expect(await peer.take('proc.signal')).toMatchObject({ proc_id: p, signal: 'TERM' });
    peer.exit(p, 143, { signal: 15 });
    const done = await waitJob(api, job.id, 'cancelled');
    expect(done).toMatchObject({ reason: 'cancelled', exit_code: 143 });
    expect((await api(`/exec/${job.id}`, { method: 'DELETE' })).status).toBe(204);
    expect(await getJob(api, job.id)).toMatchObject({ status: 'cancelled' });
  });

  it('a cancel while the agent is away is sent when it is back', async () => {
    const { h, peer, api } = await onlineHost();
    const job = await expectJson<Job>(await api('/exec', { method: 'POST', body: { command: 'sleep 100', wait: false } }), 202);
    const p = (await peer.take('proc.start')).params.proc_id;
    peer.close();
    await sleep(50);
    expect((await api(`/exec/${job.id}`, { method: 'DELETE' })).status).toBe(204);
    const back = await HostModePeer.online(h.key, { procs: [p] });
    expect(await back.take('proc.signal')).toMatchObject({ proc_id: p, signal: 'TERM' });
    back.exit(p, 143, { signal: 15 });
    expect(await waitJob(api, job.id, 'cancelled')).toMatchObject({ reason: 'cancelled' });
  });
});

describe('job limits', () => {
  it('command, args and env together are at most 512 KiB (400), whatever each is alone', async () => {
    const { api, peer } = await onlineHost();
    const env = Array.from({ length: 20 }, (_, i) => `V${i}=${'x'.repeat(30 * 1024)}`);
    const err = await expectError(await api('/exec', { method: 'POST', body: { command: 'true', env } }), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toBe('request body: command, args and env together must be at most 524288 bytes');
    expect(peer.requests).toEqual([]);
  });
});
