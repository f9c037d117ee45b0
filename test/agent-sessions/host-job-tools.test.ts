/**
 * A session's tools on a host object (host-job-tools.ts), against an
 * in-memory stand-in for the host object's RPC: an absent host is waited for
 * up to the grace and then is host_lost; a command the host lost is
 * host_lost; a command already in flight (a session picked up after
 * eviction) is waited for by its job id, not started again; a stop cancels
 * the job and waits for it to end. (The real host: test/e2e/agent-sessions.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { fail, ok, type Result } from '../../schema/errors.ts';
import { hostJobTools, type HostRpc, type JobRecord } from '../../durable-objects/agent-session/host-job-tools.ts';

const ref = { id: 'h', org_id: 'o' };

function job(over: Partial<JobRecord>): JobRecord {
  return { id: 'j1', status: 'running', exit_code: null, signal: null, reason: null, error: null, stdout: '', stderr: '', truncated: false, ...over };
}

/** A host object whose jobs end as `end` says once waited on; counts what it was asked. */
function fakeHost(opts: { connected?: () => boolean; end?: (id: string) => JobRecord | null } = {}) {
  const calls = { runJob: 0, cancelJob: [] as string[], waited: [] as string[] };
  let cancelled = false;
  const rpc: HostRpc = {
    async runJob(): Promise<Result<JobRecord>> {
      calls.runJob++;
      if (opts.connected && !opts.connected()) return fail('HOST_NOT_CONNECTED', "the host's agent is not connected");
      return ok(job({ id: `j${calls.runJob + 1}` }));
    },
    async waitJob(_r, id, ms) {
      calls.waited.push(id);
      if (cancelled) return job({ id, status: 'cancelled', reason: 'cancelled' });
      const end = opts.end?.(id);
      if (end) return end;
      await new Promise((r) => setTimeout(r, Math.min(ms, 20)));
      return job({ id });
    },
    async cancelJob(_r, id) {
      calls.cancelJob.push(id);
      cancelled = true;
      return ok(job({ id, status: 'cancelled' }));
    },
    fsList: async () => fail('NOT_FOUND', 'no such directory'),
    fsReadText: async () => fail('HOST_NOT_CONNECTED', 'away'),
    fsWriteText: async () => ok({ path: '/home/u/f', bytes: 3 }),
  };
  return { rpc, calls };
}

function memory(initial: string | null = null) {
  let v = initial;
  return { get: () => v, set: (id: string | null) => void (v = id) };
}

const live = () => new AbortController().signal;

describe('a session\'s tools on a host object', () => {
  it('a host away longer than the grace fails the call as host_lost, after asking again meanwhile', async () => {
    const { rpc, calls } = fakeHost({ connected: () => false });
    const tools = hostJobTools(rpc, ref, memory(), { graceMs: 100, retryMs: 10 });
    expect(await tools.runCommand({ command: 'true', timeout_s: 5 }, live())).toMatchObject({ failure: 'host_lost' });
    expect(calls.runJob).toBeGreaterThan(1);
    expect(await tools.readFile({ path: 'f', max_bytes: 10 }, live())).toMatchObject({ failure: 'host_lost' });
  });

  it('a host that comes back within the grace runs the command', async () => {
    let tries = 0;
    const { rpc } = fakeHost({ connected: () => ++tries > 3, end: (id) => job({ id, status: 'completed', exit_code: 0, stdout: 'back\n' }) });
    const tools = hostJobTools(rpc, ref, memory(), { graceMs: 60_000, retryMs: 5 });
    expect(await tools.runCommand({ command: 'echo back', timeout_s: 5 }, live())).toMatchObject({ exit_code: 0, stdout: 'back\n' });
  });

  it('a command the host lost is host_lost; one stopped at its timeout is exit 124', async () => {
    const lost = hostJobTools(fakeHost({ end: (id) => job({ id, status: 'failed', reason: 'host_lost', error: 'the host was away' }) }).rpc, ref, memory(), { graceMs: 1000 });
    expect(await lost.runCommand({ command: 'x', timeout_s: 5 }, live())).toEqual({ failure: 'host_lost', message: 'the host was away' });
    const slow = hostJobTools(fakeHost({ end: (id) => job({ id, status: 'failed', reason: 'timeout', signal: 15 }) }).rpc, ref, memory(), { graceMs: 1000 });
    expect(await slow.runCommand({ command: 'x', timeout_s: 5 }, live())).toMatchObject({ exit_code: 124, timed_out: true });
  });

  it('a command already in flight is waited for by its job id, not started again, and forgotten once it ended', async () => {
    const { rpc, calls } = fakeHost({ end: (id) => (id === 'j-old' ? job({ id, status: 'completed', exit_code: 3, stderr: 'old\n' }) : null) });
    const mem = memory('j-old');
    const tools = hostJobTools(rpc, ref, mem, { graceMs: 1000 });
    expect(await tools.runCommand({ command: 'x', timeout_s: 5 }, live())).toMatchObject({ exit_code: 3, stderr: 'old\n' });
    expect(calls.runJob).toBe(0);
    expect(calls.waited).toEqual(['j-old']);
    expect(mem.get()).toBeNull();
  });

  it('a stop cancels the running job (its process group) and waits for it to end', async () => {
    const { rpc, calls } = fakeHost();
    const mem = memory();
    const tools = hostJobTools(rpc, ref, mem, { graceMs: 1000 });
    const stop = new AbortController();
    const running = tools.runCommand({ command: 'sleep 100', timeout_s: 200 }, stop.signal);
    while (!mem.get()) await new Promise((r) => setTimeout(r, 5));
    const jobId = mem.get();
    stop.abort();
    expect(await running).toMatchObject({ failure: 'failed', message: 'stopped' });
    expect(calls.cancelJob).toEqual([jobId]);
    expect(mem.get()).toBeNull();
  });
});
