/**
 * Tenant isolation against the real stack: another organization's key (and a
 * JWT minted from it) sees 404 "computer not found" on every route of a real
 * running computer, learns nothing, and changes nothing.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hangar, newTenant, rawFetch, type Client, type RawReply } from './client.ts';
import { envelopeProblem, expectEnvelope } from './expect-error.ts';
import { COMPUTER_ROUTE_SAMPLES, INTRUDER_MARK } from '../computer-routes.ts';
import { CLUSTER_ROUTE_SAMPLES, HOST_INTRUDER_MARK, HOST_ROUTE_SAMPLES, TENANT_SECRET_ROUTE_SAMPLES } from '../host-routes.ts';
import { startHostAgent } from './host-agent.ts';

let a: Client;
let b: Client;
let aId: string;
let bId: string;
const secret = `owner-only-${randomBytes(8).toString('hex')}`;

beforeAll(async () => {
  [a, b] = await Promise.all([newTenant('isolation-a'), newTenant('isolation-b')]);
  [aId, bId] = await Promise.all([a.runningComputer('a-computer'), b.runningComputer('b-computer')]);
  expect((await a.post(`/computers/${aId}/env`, { name: 'SECRET', value: secret })).status).toBe(201);
  expect((await a.post(`/computers/${aId}/ports`, { port: 3000, visibility: 'public' })).status).toBe(201);
});

afterAll(async () => {
  await Promise.all([aId && a.del(`/computers/${aId}`), bId && b.del(`/computers/${bId}`)]);
});

/** What A can see of its computer: any change by B shows here. */
async function stateOfA(): Promise<string[]> {
  const paths = [`/computers/${aId}`, `/computers/${aId}/env`, `/computers/${aId}/ports`, `/computers/${aId}/auto-stop`, '/computers'];
  return Promise.all(paths.map(async (p) => (await a.raw('GET', p)).text));
}

/** A token minted from B's key, through a client address of its own (the auth limit is 20/min per address). */
async function jwtOf(c: Client): Promise<string> {
  const r = await rawFetch(`${hangar().apiUrl}/auth/token`, 'POST', {
    body: JSON.stringify({ api_key: c.key }),
    headers: { 'content-type': 'application/json', 'cf-connecting-ip': '198.51.100.31' },
  });
  expect(r.status).toBe(200);
  return (JSON.parse(r.text) as { data: { token: string } }).data.token;
}

function leaks(r: RawReply, label: string): string[] {
  const found = [aId, a.orgId, secret, 'a-computer'].filter((s) => r.text.includes(s));
  return found.length ? [`${label}: response shows ${found.join(', ')}`] : [];
}

describe('tenant isolation on a real computer', () => {
  it("another tenant's key and JWT get 404 computer not found on every route of a running computer, and nothing changes", async () => {
    const before = await stateOfA();
    const failures: string[] = [];
    for (const credential of [b.key, await jwtOf(b)]) {
      for (const { method, path, body } of COMPUTER_ROUTE_SAMPLES) {
        const init = body === undefined ? { auth: credential } : { auth: credential, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
        const r = await rawFetch(`${hangar().apiUrl}/computers/${aId}${path}`, method, init);
        const label = `${method} ${path || '/'}`;
        const problem = envelopeProblem(r, 404, 'NOT_FOUND');
        if (problem) failures.push(`${label}: ${problem}`);
        else if (expectEnvelope(r).error.message !== 'computer not found') failures.push(`${label}: ${r.text}`);
        failures.push(...leaks(r, label));
      }
    }
    expect(failures).toEqual([]);
    expect(await stateOfA()).toEqual(before);

    // Still running and untouched inside: exec works, the env var is the owner's, nothing ran for B.
    const r = await a.exec(aId, `printenv SECRET; test -e ${INTRUDER_MARK} && echo intruded || echo clean`);
    expect(r.body).toMatchObject({ output: `${secret}\nclean\n`, exit_code: 0 });
    expect((await a.get(`/computers/${aId}`)).body).toMatchObject({ status: 'running', size: 'small', name: 'a-computer', agent_session_id: null, auto_stop: 0 });
  });

  it("lists show each tenant only its own computers, whatever filters name the other's", async () => {
    const listA = await a.get<{ computers: { id: string }[]; total: number }>('/computers');
    const listB = await b.get<{ computers: { id: string }[]; total: number }>('/computers');
    expect(listA.body.computers.map((c) => c.id)).toEqual([aId]);
    expect(listB.body.computers.map((c) => c.id)).toEqual([bId]);
    expect(listA.body.total).toBe(1);
    expect(listB.body.total).toBe(1);

    const aComputer = (await a.get<{ workspace_id: string; project_id: string }>(`/computers/${aId}`)).body;
    for (const q of [`workspace_id=${aComputer.workspace_id}`, `project_id=${aComputer.project_id}`]) {
      const r = await b.raw('GET', `/computers?${q}`);
      expect(r.text, q).not.toContain(aId);
      if (r.status === 200) expect((JSON.parse(r.text) as { total: number }).total, q).toBe(0);
      else expectEnvelope(r, 404, 'NOT_FOUND', q);
    }
  });

  it("another tenant's workspace and project ids are 404 to read, delete and create into", async () => {
    const aComputer = (await a.get<{ workspace_id: string; project_id: string }>(`/computers/${aId}`)).body;
    expectEnvelope(await b.raw('GET', `/workspaces/${aComputer.workspace_id}`), 404, 'NOT_FOUND', 'workspace');
    expectEnvelope(await b.raw('GET', `/projects/${aComputer.project_id}`), 404, 'NOT_FOUND', 'project');
    expectEnvelope(await b.raw('DELETE', `/workspaces/${aComputer.workspace_id}`), 404, 'NOT_FOUND', 'workspace delete');
    expect((await a.raw('GET', `/workspaces/${aComputer.workspace_id}`)).status).toBe(200);
    const json = { 'content-type': 'application/json' };
    const intoA = [
      ['/computers', { name: 'squatter', template_type: 'miosa-desktop', workspace_id: aComputer.workspace_id }],
      ['/computers', { name: 'squatter', template_type: 'miosa-desktop', project_id: aComputer.project_id }],
      ['/projects', { name: 'squatter', workspace_id: aComputer.workspace_id }],
    ] as const;
    for (const [path, body] of intoA) {
      expectEnvelope(await b.raw('POST', path, { body: JSON.stringify(body), headers: json }), 404, 'NOT_FOUND', `${path} ${Object.keys(body).join()}`);
    }
    expect((await b.get<{ total: number }>('/computers')).body.total).toBe(1);
    const projectsA = await a.get<{ data: { name: string }[] }>('/projects?page_size=100');
    expect(projectsA.body.data.map((p) => p.name)).not.toContain('squatter');
  });
});

describe('tenant isolation on a real tenant host (OpenComputers)', () => {
  it("another tenant's key gets 404 host not found on every route of an online host, its jobs and secrets; nothing runs and nothing changes", async () => {
    const agent = await startHostAgent(a, { name: 'owners-box' });
    try {
      const hostPath = `/opencomputers/hosts/${agent.hostId}`;
      const job = await a.post<{ id: string; stdout: string }>(`${hostPath}/exec`, { command: `echo owner-output; test -e ${HOST_INTRUDER_MARK} && echo intruded || echo clean` });
      expect(job.body.stdout).toBe('owner-output\nclean\n');
      const hsecret = (await a.post<{ id: string }>(`${hostPath}/secrets`, { name: 'OWNER_ONLY', value: secret })).body.id;
      const tsecret = (await a.post<{ id: string }>('/opencomputers/secrets', { name: 'TENANT_ONLY', value: secret })).body.id;
      const tunnel = (await a.post<{ id: string }>(`${hostPath}/tunnels`, { target_port: 3000, auth_mode: 'tenant_only' })).body.id;
      const cluster = (await a.post<{ id: string; slug: string }>('/opencomputers/clusters', { name: 'owners-cluster', model: 'hangar-tiny', host_ids: [agent.hostId] })).body;
      // A session of the owner's on the host, its model the owner's cluster.
      const session = (await a.post<{ id: string }>(`${hostPath}/agent/dispatch`, { task: 'owner task', model_id: cluster.id, tools: ['list_directory'], max_turns: 1 })).body;
      expect(session.id).toBeTruthy();
      const fill = (p: string) => p.replace('{session}', session.id).replace('{job}', job.body.id).replace('{secret}', hsecret).replace('{tsecret}', tsecret).replace('{tunnel}', tunnel).replace('{cluster}', cluster.id);
      // The cluster's members' live state is left out: it moves by itself.
      const clusterRow = async () => JSON.stringify({ ...(await a.get<Record<string, unknown>>(`/opencomputers/clusters/${cluster.id}`)).body, members: null, data: null, status: null });
      const state = async () => [...(await Promise.all([hostPath, `${hostPath}/exec`, `${hostPath}/secrets`, `${hostPath}/tunnels`, '/opencomputers/secrets', '/opencomputers/hosts'].map(async (p) => (await a.raw('GET', p)).text))), await clusterRow()];
      const before = await state();
      const failures: string[] = [];
      for (const { method, path, body } of [...HOST_ROUTE_SAMPLES.map((r) => ({ ...r, path: `${hostPath}${fill(r.path)}` })), ...TENANT_SECRET_ROUTE_SAMPLES.map((r) => ({ ...r, path: `/opencomputers${fill(r.path)}` })), ...CLUSTER_ROUTE_SAMPLES.map((r) => ({ ...r, path: `/opencomputers${fill(r.path)}` }))]) {
        const r = await b.raw(method, path, body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
        const problem = envelopeProblem(r, 404, 'NOT_FOUND');
        if (problem) failures.push(`${method} ${path}: ${problem}`);
        for (const leak of [a.orgId, 'owners-box', 'owner-output', secret, 'owners-cluster']) if (r.text.includes(leak)) failures.push(`${method} ${path}: shows ${leak}`);
      }
      // The cluster's inference URL (on the API host, outside /api/v1) is not theirs either.
      const inference = await rawFetch(`${new URL(b.apiUrl).origin}/inference/${cluster.slug}/v1/models`, 'GET', { auth: b.key });
      const iproblem = envelopeProblem(inference, 404, 'NOT_FOUND');
      if (iproblem) failures.push(`inference URL: ${iproblem}`);
      expect(failures).toEqual([]);
      expect(await state()).toEqual(before);
      const check = await a.post<{ stdout: string }>(`${hostPath}/exec`, { command: `test -e ${HOST_INTRUDER_MARK} && echo intruded || echo clean` });
      expect(check.body.stdout).toBe('clean\n');
      expect((await b.get<{ data: unknown[] }>('/opencomputers/hosts')).body.data).toEqual([]);
    } finally {
      await agent.stop();
    }
  });
});
