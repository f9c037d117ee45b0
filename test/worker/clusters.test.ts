/**
 * Inference clusters' routes in the Worker: the create body checked (hosts
 * must be the caller's tenant hosts), another tenant's key a 404 on every
 * cluster route and on the inference URL with nothing changed, malformed ids
 * 400s, stop making the URL a 503. (Serving through real agents and model
 * servers: test/e2e/clusters.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson, tenantFetch, type FetchInit } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { OC, registerTenantHost } from './host-mode-peer.ts';
import { CLUSTER_ROUTE_SAMPLES } from '../host-routes.ts';
import { ROUTES as ROUTE_TABLE } from '../../worker/routes/index.ts';

useAgentPeers();

const init = (method: string, body: unknown): FetchInit => (body === undefined ? { method } : { method, body });
type Cluster = { id: string; slug: string; status: string; host_ids: string[]; inference_url: string };

async function ownerWithCluster(name = 'Team GPUs') {
  const owner = await createTenant();
  const h = await registerTenantHost(owner.apiKey, { name: 'gpu-box' });
  const c = await expectJson<Cluster>(await tenantFetch(owner.apiKey, `${OC}/clusters`, { method: 'POST', body: { name, model: 'hangar-tiny', host_ids: [h.id, h.id] } }), 201);
  return { owner, host: h, cluster: c };
}

describe('inference cluster routes', () => {
  it('the walked list covers every tenant route of the table that takes a cluster id', () => {
    const walked = new Set(CLUSTER_ROUTE_SAMPLES.map((r) => `${r.method} ${r.pattern}`));
    const table = ROUTE_TABLE.filter((d) => d.auth === 'tenant' && d.path.startsWith(`${OC}/clusters/:`)).map((d) => `${d.method} ${d.path}`);
    expect(table.length).toBe(4);
    expect(table.filter((t) => !walked.has(t))).toEqual([]);
  });

  it('creates a cluster of the caller\'s hosts (duplicates once) with a slug from its name; a host offline leaves it in error, not serving', async () => {
    const { owner, host, cluster } = await ownerWithCluster('Team GPUs');
    expect(cluster).toMatchObject({ slug: expect.stringMatching(/^team-gpus/), host_ids: [host.id], inference_url: `https://api.test/inference/${cluster.slug}/v1` });
    const got = await expectJson<Cluster & { members: Array<{ state: string; error: string | null }> }>(await tenantFetch(owner.apiKey, `${OC}/clusters/${cluster.id}`), 200);
    expect(got.members).toEqual([{ host_id: host.id, state: 'offline', error: "the host's agent is not connected" }]);
    expect(got.status).toBe('error');
    const r = await tenantFetch(owner.apiKey, `/inference/${cluster.slug}/v1/chat/completions`, { method: 'POST', body: { messages: [] } });
    expect(r.status).toBe(503);
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/no member of this cluster/);
    const list = await expectJson<{ data: Cluster[] }>(await tenantFetch(owner.apiKey, `${OC}/clusters`), 200);
    expect(list.data.map((c) => c.id)).toEqual([cluster.id]);
  });

  it('refuses hosts that are not the caller\'s (404), a taken slug (409) and malformed bodies (400)', async () => {
    const { owner, cluster } = await ownerWithCluster();
    const other = await createTenant();
    const mine = await registerTenantHost(other.apiKey, { name: 'mine' });
    const stranger = await registerTenantHost(owner.apiKey, { name: 'theirs' });
    const post = (body: unknown) => tenantFetch(other.apiKey, `${OC}/clusters`, { method: 'POST', body });
    await expectError(await post({ name: 'x', model: 'hangar-tiny', host_ids: [stranger.id] }), 404, 'NOT_FOUND');
    await expectError(await post({ name: 'x', model: 'hangar-tiny', host_ids: [crypto.randomUUID()] }), 404, 'NOT_FOUND');
    await expectError(await post({ name: 'x', model: 'hangar-tiny', host_ids: [mine.id], slug: cluster.slug }), 409, 'CONFLICT');
    await expectError(await post({ name: 'x', model: 'hangar-tiny', host_ids: [] }), 400, 'VALIDATION_FAILED');
    await expectError(await post({ name: 'x', model: '../etc', host_ids: [mine.id] }), 400, 'VALIDATION_FAILED');
    await expectError(await post({ name: 'x', model: 'hangar-tiny', host_ids: ['not-an-id'] }), 400, 'VALIDATION_FAILED');
    expect((await expectJson<{ data: unknown[] }>(await tenantFetch(other.apiKey, `${OC}/clusters`), 200)).data).toEqual([]);
  });

  it("another tenant's key gets 404 on every cluster route and on its inference URL, and nothing changes", async () => {
    const { owner, cluster } = await ownerWithCluster();
    const intruder = await createTenant();
    const state = async () => (await tenantFetch(owner.apiKey, `${OC}/clusters/${cluster.id}`)).text();
    const before = await state();
    for (const { method, path, body } of CLUSTER_ROUTE_SAMPLES) {
      const res = await tenantFetch(intruder.apiKey, `${OC}${path.replace('{cluster}', cluster.id)}`, init(method, body));
      const text = await res.clone().text();
      const err = await expectError(res, 404, 'NOT_FOUND');
      expect(err.error.message, `${method} ${path}`).toBe('cluster not found');
      for (const leak of [owner.orgId, 'gpu-box', cluster.slug]) expect(text, `${method} ${path}`).not.toContain(leak);
    }
    await expectError(await tenantFetch(intruder.apiKey, `/inference/${cluster.slug}/v1/models`), 404, 'NOT_FOUND');
    await expectError(await tenantFetch(intruder.apiKey, `/inference/${cluster.slug}/v1/chat/completions`, { method: 'POST', body: {} }), 404, 'NOT_FOUND');
    expect(await state()).toBe(before);
  });

  it('a malformed cluster id is a 400 on every cluster route; a well-formed unknown one a 404', async () => {
    const t = await createTenant();
    for (const { method, path, body } of CLUSTER_ROUTE_SAMPLES) {
      const err = await expectError(await tenantFetch(t.apiKey, `${OC}${path.replace('{cluster}', 'not-a-uuid')}`, init(method, body)), 400, 'INVALID_ID');
      expect(err.error.message).toBe('invalid cluster id');
      await expectError(await tenantFetch(t.apiKey, `${OC}${path.replace('{cluster}', crypto.randomUUID())}`, init(method, body)), 404, 'NOT_FOUND');
    }
  });

  it('stop makes the inference URL a 503 that says how to start it; start and delete', async () => {
    const { owner, cluster } = await ownerWithCluster();
    const stopped = await expectJson<Cluster>(await tenantFetch(owner.apiKey, `${OC}/clusters/${cluster.id}/stop`, { method: 'POST' }), 200);
    expect(stopped.status).toBe('stopped');
    const err = await expectError(await tenantFetch(owner.apiKey, `/inference/${cluster.slug}/v1/models`), 503, 'CLUSTER_STOPPED');
    expect(err.error.message).toContain(`/clusters/${cluster.id}/start`);
    const started = await expectJson<Cluster>(await tenantFetch(owner.apiKey, `${OC}/clusters/${cluster.id}/start`, { method: 'POST' }), 200);
    expect(started.status).not.toBe('stopped');
    expect((await tenantFetch(owner.apiKey, `${OC}/clusters/${cluster.id}`, { method: 'DELETE' })).status).toBe(204);
    await expectError(await tenantFetch(owner.apiKey, `${OC}/clusters/${cluster.id}`), 404, 'NOT_FOUND');
    await expectError(await tenantFetch(owner.apiKey, `/inference/${cluster.slug}/v1/models`), 404, 'NOT_FOUND');
  });
});
