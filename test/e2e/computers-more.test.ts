/**
 * More of the computers and exec pages against real sandboxes: clone, resize
 * (seen in the host's cgroup), env vars inside the computer, metrics,
 * auto-stop, credits, package installs, the output cap and output order.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXEC_MAX_OUTPUT_BYTES } from '../../schema/api.ts';
import { hangar, newTenant, operatorClient, type Client } from './client.ts';
import { hostLimits } from './isolation-under-test.ts';
import { expectEnvelope } from './expect-error.ts';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** What this host gives the computer (its cgroup's limits, or its VM's hardware); null when it does not run. */
const limitsOf = (id: string) => hostLimits(hangar().dataDir, id);

let api: Client;
/** One computer for the tests that leave it running as they found it. */
let main: string;
const created: string[] = [];

async function computer(name: string): Promise<string> {
  const id = await api.runningComputer(name);
  created.push(id);
  return id;
}

beforeAll(async () => {
  api = await newTenant('more');
  main = await computer('main');
});

afterAll(async () => {
  for (const id of created) await api.del(`/computers/${id}`);
});

describe('lifecycle on real sandboxes', () => {
  it('a clone has the files written in its source, and the two disks are independent afterwards', async () => {
    const src = await computer('clone-source');
    const token = randomBytes(8).toString('hex');
    expect((await api.exec(src, `echo ${token} > /workspace/marker.txt; sync`)).body.exit_code).toBe(0);

    const r = await api.post<{ id: string; status: string; name: string }>(`/computers/${src}/clone`, { name: 'the-clone' });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ status: 'provisioning', name: 'the-clone' });
    const clone = r.body.id;
    created.push(clone);
    expect(clone).not.toBe(src);
    await api.waitFor(clone, 'running');

    expect((await api.exec(clone, 'cat /workspace/marker.txt')).body.output).toBe(`${token}\n`);
    await api.exec(clone, 'echo changed > /workspace/marker.txt');
    expect((await api.exec(src, 'cat /workspace/marker.txt')).body.output).toBe(`${token}\n`);
  });

  it('resize while stopped changes the limits the kernel applies once it starts again', async () => {
    const id = await computer('resize');
    expect(limitsOf(id)).toEqual({ memoryBytes: 4096 * MiB, vcpus: 1 });
    expectEnvelope(await api.raw('POST', `/computers/${id}/resize`, { body: '{"size":"medium"}', headers: { 'content-type': 'application/json' } }), 409, 'INVALID_STATE_TRANSITION');

    expect((await api.post(`/computers/${id}/stop`)).body.status).toBe('stopped');
    const r = await api.post(`/computers/${id}/resize`, { size: 'medium' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ size: 'medium', vcpus: 2, memory_mb: 8192, status: 'stopped' });
    expect((await api.post(`/computers/${id}/start`)).body.status).toBe('running');

    expect(limitsOf(id)).toEqual({ memoryBytes: 8192 * MiB, vcpus: 2 });
    expect((await api.exec(id, 'true')).body.exit_code).toBe(0);
  });

  it('auto-stop stops an idle computer after its seconds, and the sandbox is really gone', async () => {
    const id = await computer('auto-stop');
    const set = await api.patch(`/computers/${id}/auto-stop`, { auto_stop_seconds: 2 });
    expect(set.body).toEqual({ auto_stop_seconds: 2, enabled: true });
    const t0 = Date.now();
    // GET reads D1 only: polling it is not activity. Stopping takes a moment (a VM powers off cleanly): wait through it.
    let status = 'running';
    while ((status === 'running' || status === 'stopping') && Date.now() - t0 < 60_000) {
      await sleep(250);
      status = (await api.get(`/computers/${id}`)).body.status as string;
    }
    expect(status).toBe('stopped');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_750);

    expectEnvelope(await api.raw('POST', `/computers/${id}/exec`, { body: '{"command":"true"}', headers: { 'content-type': 'application/json' } }), 409, 'COMPUTER_NOT_RUNNING');
    expect(limitsOf(id)).toBeNull();
    expect((await api.get(`/computers/${id}/auto-stop`)).body).toEqual({ auto_stop_seconds: 2, enabled: true });
  });

  it('an organization without credits cannot create a computer (402), nor start one once its balance is gone', async () => {
    const broke = await newTenant('broke', { credits: 0 });
    const r = await broke.raw('POST', '/computers', { body: '{"name":"x","template_type":"miosa-desktop"}', headers: { 'content-type': 'application/json' } });
    expectEnvelope(r, 402, 'INSUFFICIENT_CREDITS');
    expect((await broke.get('/computers')).body.total).toBe(0);

    const id = await computer('credits');
    await api.post(`/computers/${id}/stop`);
    const op = operatorClient();
    const balance = (await op.get<{ data: { balance: number } }>(`/admin/organizations/${api.orgId}/credits`)).body.data.balance;
    expect((await op.post(`/admin/organizations/${api.orgId}/credits`, { amount: -balance, reason: 'e2e: drain' })).status).toBe(201);
    try {
      expectEnvelope(await api.raw('POST', `/computers/${id}/start`), 402, 'INSUFFICIENT_CREDITS');
      expect((await api.get(`/computers/${id}`)).body.status).toBe('stopped');
    } finally {
      await op.post(`/admin/organizations/${api.orgId}/credits`, { amount: balance, reason: 'e2e: refill' });
    }
    expect((await api.post(`/computers/${id}/start`)).body.status).toBe('running');
  });
});

describe('env vars inside a real computer', () => {
  it('a var set through the API is in new processes at once and after stop/start; its value is in no API response', async () => {
    const v1 = `first-${randomBytes(6).toString('hex')}`;
    const v2 = `second-${randomBytes(6).toString('hex')}`;
    const seen: string[] = [];
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await api.raw(method, path, body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      seen.push(`${method} ${path} ${r.status} ${r.text}`);
      return r;
    };
    const printenv = async () => (await api.exec(main, 'printenv HANGAR_E2E_TOKEN || echo unset')).body.output;

    expect((await call('POST', `/computers/${main}/env`, { name: 'HANGAR_E2E_TOKEN', value: v1 })).status).toBe(201);
    expect(await printenv()).toBe(`${v1}\n`);
    expect((await call('PATCH', `/computers/${main}/env/HANGAR_E2E_TOKEN`, { value: v2 })).status).toBe(200);
    expect(await printenv()).toBe(`${v2}\n`);

    for (const p of [`/computers/${main}/env`, `/computers/${main}`, '/computers']) await call('GET', p);
    expect((await call('POST', `/computers/${main}/stop`)).status).toBe(200);
    expect((await call('POST', `/computers/${main}/start`)).status).toBe(200);
    expect(await printenv()).toBe(`${v2}\n`);

    expect((await call('DELETE', `/computers/${main}/env/HANGAR_E2E_TOKEN`)).status).toBe(200);
    expect(await printenv()).toBe('unset\n');
    expect(seen.filter((s) => s.includes(v1) || s.includes(v2))).toEqual([]);
    expect(seen.some((s) => s.includes('HANGAR_E2E_TOKEN'))).toBe(true);
  });
});

describe('metrics of a real computer', () => {
  type Metrics = { cpu_percent: { ts: string; value: number }[]; memory_percent: { ts: string; value: number }[]; credits_per_hour: number };
  const cpuByBucket = (m: Metrics) => new Map(m.cpu_percent.map((p) => [p.ts, p.value]));

  it('has cpu and memory points within seconds, and a 3 s burst of `yes` raises the cpu', async () => {
    const id = await computer('metrics');
    await sleep(3_000);
    const before = (await api.get<Metrics>(`/computers/${id}/metrics?window=1h`)).body;
    expect(before.cpu_percent.length).toBeGreaterThan(0);
    expect(before.memory_percent.length).toBeGreaterThan(0);
    for (const p of [...before.cpu_percent, ...before.memory_percent]) {
      expect(p.ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$/);
      expect(p.value).toBeGreaterThanOrEqual(0);
      expect(p.value).toBeLessThanOrEqual(100);
    }
    expect(before.memory_percent.at(-1)!.value).toBeGreaterThan(0);
    expect(before.credits_per_hour).toBe(1);

    const burstBucket = new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString().replace('.000Z', 'Z');
    expect((await api.exec(id, 'timeout 3 yes > /dev/null; true')).body.exit_code).toBe(0);
    await sleep(1_500);
    const after = (await api.get<Metrics>(`/computers/${id}/metrics?window=1h`)).body;
    const old = cpuByBucket(before);
    // Per-minute averages: the bucket(s) the burst fell in rose, whether or not they existed before.
    const rises = after.cpu_percent.filter((p) => p.ts >= burstBucket).map((p) => p.value - (old.get(p.ts) ?? 0));
    expect(Math.max(...rises)).toBeGreaterThan(1);
  });
});

describe('exec on a real computer', () => {
  it('sudo apt-get install -y jq installs it from the network', { timeout: 330_000 }, async () => {
    const r = await api.exec(main, 'sudo apt-get remove -y jq >/dev/null 2>&1; command -v jq || echo gone; sudo apt-get install -y jq >/tmp/apt.log 2>&1; echo apt=$?; jq --version', 300);
    expect(r.status).toBe(200);
    expect(r.body.output).toMatch(/^gone\napt=0\njq-\d+\.\d+/);
  });

  it('pip install requests works through the host mirror, and python3 imports it', { timeout: 330_000 }, async () => {
    expect((await api.exec(main, "python3 -c 'import requests' 2>/dev/null || echo missing")).body.output).toBe('missing\n');
    const r = await api.exec(main, "pip install requests >/tmp/pip.log 2>&1; echo pip=$?; python3 -c 'import requests; print(requests.__name__)'", 300);
    expect(r.body.output).toBe('pip=0\nrequests\n');
  });

  it('output over the cap is cut at 1 MiB with truncated:true and the marker at the end', async () => {
    const r = await api.exec(main, "head -c 2000000 /dev/zero | tr '\\0' a");
    expect(r.status).toBe(200);
    expect(r.body.truncated).toBe(true);
    const out = r.body.output;
    expect(out.slice(0, EXEC_MAX_OUTPUT_BYTES)).toBe('a'.repeat(EXEC_MAX_OUTPUT_BYTES));
    expect(out.slice(EXEC_MAX_OUTPUT_BYTES)).toMatch(/^\n\[output truncated[^\n]*\]\n$/);
    expect(out.length).toBeLessThan(EXEC_MAX_OUTPUT_BYTES + 200);
  });

  it('stdout and stderr come back combined in the order they were written', async () => {
    const r = await api.exec(main, 'echo a; echo b >&2; echo c');
    expect(r.body).toMatchObject({ output: 'a\nb\nc\n', exit_code: 0, truncated: false });
  });
});
