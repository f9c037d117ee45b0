/**
 * Inference clusters end to end: two real host-mode agents on this machine,
 * each using a real model server on its loopback (the tiny model, over
 * llama.cpp) given with --model-server, grouped in a cluster through the
 * API; requests to the cluster's inference URL with the tenant's key reach
 * the members through their agents' links, spread over both, stream chunk by
 * chunk, skip a member whose server is gone (before any byte), and leave a
 * member whose agent is gone out of the rotation.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MEMBER_HEADER } from '../../durable-objects/cluster/inference-proxy.ts';
import { ManagedModelServer } from '../../host-agent/model-server/managed-server.ts';
import { newTenant, type Client } from './client.ts';
import { startHostAgent, type HostAgent } from './host-agent.ts';
import { parseSse } from './sse.ts';

type Cluster = { id: string; slug: string; status: string; model: string; host_ids: string[]; inference_url: string; members: Array<{ host_id: string; state: string; error: string | null }> };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let api: Client;
let dir: string;
const servers: ManagedModelServer[] = [];
const agents: HostAgent[] = [];
let cluster: Cluster;

/** Polls the cluster until `ok` holds (generous: the machine is shared). */
async function clusterUntil(what: string, ok: (c: Cluster) => boolean, ms = 120_000): Promise<Cluster> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await api.get<Cluster>(`/opencomputers/clusters/${cluster.id}`);
    if (r.status === 200 && ok(r.body)) return r.body;
    if (Date.now() > deadline) throw new Error(`cluster: ${what} not reached within ${ms} ms; last ${JSON.stringify(r.body)}`);
    await sleep(250);
  }
}

const infer = (p: string, body?: object, key = api.key) =>
  fetch(`${cluster.inference_url}${p}`, {
    method: body ? 'POST' : 'GET',
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });

const chat = (extra: object = {}) => infer('/chat/completions', { model: 'hangar-tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 6, ...extra });

beforeAll(async () => {
  api = await newTenant('clusters');
  dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-models-'));
  for (let i = 0; i < 2; i++) {
    const s = new ManagedModelServer({ model: 'hangar-tiny', modelsDir: dir, slots: 2, threads: 1 });
    await s.start();
    servers.push(s);
    agents.push(await startHostAgent(api, { name: `gpu-${i}`, args: ['--model-server', `http://127.0.0.1:${s.port}`] }));
  }
  const r = await api.post<Cluster>('/opencomputers/clusters', { name: 'My Cluster!', model: 'hangar-tiny', host_ids: agents.map((a) => a.hostId) });
  if (r.status !== 201) throw new Error(`create cluster: ${r.status} ${JSON.stringify(r.body)}`);
  cluster = r.body;
}, 300_000);

afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => {});
  for (const s of servers) await s.stop().catch(() => {});
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('an inference cluster of two host-mode agents', () => {
  it('is created with a slug from its name and an inference URL on the API host, and becomes active with both members ready', async () => {
    expect(cluster).toMatchObject({ slug: expect.stringMatching(/^my-cluster/), model: 'hangar-tiny', host_ids: agents.map((a) => a.hostId) });
    expect(cluster.inference_url).toBe(`${new URL(api.apiUrl).origin}/inference/${cluster.slug}/v1`);
    const c = await clusterUntil('active, both ready', (c) => c.status === 'active' && c.members.every((m) => m.state === 'ready'));
    expect(c.members.map((m) => m.host_id).sort()).toEqual(agents.map((a) => a.hostId).sort());
    const list = await api.get<{ data: Cluster[] }>('/opencomputers/clusters');
    expect(list.body.data.map((x) => x.id)).toContain(cluster.id);
  });

  it('answers OpenAI chat completions with the tenant key, spread over both members, each answer naming its member', async () => {
    await clusterUntil('active, both ready', (c) => c.members.every((m) => m.state === 'ready'));
    const seen = new Map<string, number>();
    for (let i = 0; i < 4; i++) {
      const batch = await Promise.all([chat(), chat(), chat()]);
      for (const r of batch) {
        if (r.status !== 200) throw new Error(`chat: ${r.status} ${await r.text()}`);
        const body = (await r.json()) as { object: string; choices: Array<{ message: { role: string } }> };
        expect(body.object).toBe('chat.completion');
        expect(body.choices[0].message.role).toBe('assistant');
        const m = r.headers.get(MEMBER_HEADER)!;
        seen.set(m, (seen.get(m) ?? 0) + 1);
      }
    }
    expect([...seen.keys()].sort()).toEqual(agents.map((a) => a.hostId).sort());
    for (const n of seen.values()) expect(n).toBeGreaterThanOrEqual(3);
    const models = await infer('/models');
    expect(models.status).toBe(200);
    expect(((await models.json()) as { data: Array<{ id: string }> }).data.map((d) => d.id)).toContain('hangar-tiny');
  });

  it('passes a streamed answer through as it is written: the first chunk arrives while the member is still generating', async () => {
    const r = await chat({ stream: true, max_tokens: 300 });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/event-stream');
    const server = servers[agents.findIndex((a) => a.hostId === r.headers.get(MEMBER_HEADER))];
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    let buffer = '';
    const data: string[] = [];
    let busyAtFirst: number | null = null;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const parsed = parseSse(buffer + dec.decode(value, { stream: true }));
      buffer = parsed.rest;
      data.push(...parsed.messages.map((m) => m.data));
      if (busyAtFirst === null && data.length > 0) {
        // Had the answer been gathered before it was passed on, the member would be idle by now.
        busyAtFirst = ((await (await fetch(`${server.baseUrl()}/health`)).json()) as { busy: number }).busy;
      }
    }
    expect(busyAtFirst).toBeGreaterThanOrEqual(1);
    expect(data.at(-1)).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as { object: string });
    expect(chunks.length).toBeGreaterThanOrEqual(100);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
  });

  it('another tenant sees no cluster: its id and its inference URL are 404s; a malformed id is a 400', async () => {
    const other = await newTenant('clusters-other');
    expect((await other.get(`/opencomputers/clusters/${cluster.id}`)).status).toBe(404);
    expect((await other.post(`/opencomputers/clusters/${cluster.id}/stop`)).status).toBe(404);
    expect((await other.del(`/opencomputers/clusters/${cluster.id}`)).status).toBe(404);
    const r = await infer('/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }, other.key);
    expect(r.status).toBe(404);
    expect((await api.get('/opencomputers/clusters/not-an-id')).status).toBe(400);
    // Nor can a cluster be made of another tenant's hosts.
    const steal = await other.post('/opencomputers/clusters', { name: 'x', model: 'hangar-tiny', host_ids: [agents[0].hostId] });
    expect(steal.status).toBe(404);
    expect((await infer('/models', undefined, 'hk_not_a_key')).status).toBe(401);
  });

  it('stop: the URL answers 503 and the hosts let go; start: it serves again', async () => {
    const stopped = await api.post<Cluster>(`/opencomputers/clusters/${cluster.id}/stop`);
    expect(stopped.status).toBe(200);
    expect(stopped.body.status).toBe('stopped');
    const r = await chat();
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('CLUSTER_STOPPED');
    const started = await api.post<Cluster>(`/opencomputers/clusters/${cluster.id}/start`);
    expect(started.status).toBe(200);
    await clusterUntil('active again', (c) => c.status === 'active' && c.members.every((m) => m.state === 'ready'));
    expect((await chat()).status).toBe(200);
  });

  it('a member whose model server is gone is skipped before any byte (the request still succeeds) and leaves the rotation', async () => {
    await clusterUntil('both ready', (c) => c.members.every((m) => m.state === 'ready'));
    const gone = agents[0].hostId;
    await servers[0].stop();
    for (let i = 0; i < 6; i++) {
      const r = await chat();
      expect(r.status).toBe(200);
      expect(r.headers.get(MEMBER_HEADER)).toBe(agents[1].hostId);
      await r.arrayBuffer();
    }
    const c = await clusterUntil('the member out', (c) => c.members.find((m) => m.host_id === gone)!.state !== 'ready', 30_000);
    expect(c.status).toBe('active');
  });

  it('a member whose agent is killed leaves the rotation; with no member left the URL answers 503 saying why', async () => {
    agents[1].process.kill('SIGKILL');
    await agents[1].exited;
    await clusterUntil('no member ready', (c) => c.members.every((m) => m.state !== 'ready'), 30_000);
    const r = await chat();
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/no member/);
  });

  it('delete is a 204 and the cluster is gone', async () => {
    expect((await api.del(`/opencomputers/clusters/${cluster.id}`)).status).toBe(204);
    expect((await api.get(`/opencomputers/clusters/${cluster.id}`)).status).toBe(404);
    expect((await chat()).status).toBe(404);
  });
});
