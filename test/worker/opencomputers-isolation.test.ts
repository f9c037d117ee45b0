import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson, tenantFetch, type FetchInit } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { HostModePeer, OC, registerTenantHost } from './host-mode-peer.ts';
import { HOST_ROUTE_SAMPLES, TENANT_SECRET_ROUTE_SAMPLES } from '../host-routes.ts';
import { ROUTES as ROUTE_TABLE } from '../../worker/routes/index.ts';

useAgentPeers();

const init = (method: string, body: unknown): FetchInit => (body === undefined ? { method } : { method, body });

describe('OpenComputers tenant isolation', () => {
  it('the walked lists cover every tenant route of the table that takes a host id or a secret id', () => {
    const walked = new Set([...HOST_ROUTE_SAMPLES, ...TENANT_SECRET_ROUTE_SAMPLES].map((r) => `${r.method} ${r.pattern}`));
    const table = ROUTE_TABLE.filter((d) => d.auth === 'tenant' && (d.path.startsWith(`${OC}/hosts/:id`) || d.path.startsWith(`${OC}/secrets/:`))).map(
      (d) => `${d.method} ${d.path}`,
    );
    expect(table.length).toBeGreaterThan(10);
    expect(table.filter((t) => !walked.has(t))).toEqual([]);
  });

  it("another tenant's key gets 404 on every route of an online host, its jobs and secrets, and nothing changes", async () => {
    const owner = await createTenant();
    const h = await registerTenantHost(owner.apiKey, { name: 'owners-box', labels: { team: 'a' } });
    const peer = await HostModePeer.online(h.key);
    const posted = tenantFetch(owner.apiKey, `${OC}/hosts/${h.id}/exec`, { method: 'POST', body: { command: 'echo owner' } });
    const p = (await peer.take('proc.start')).params.proc_id;
    peer.output(p, 'stdout', 'owner-output\n');
    peer.exit(p, 0);
    const job = await expectJson<{ id: string }>(await posted, 200);
    const secret = await expectJson<{ id: string }>(await tenantFetch(owner.apiKey, `${OC}/hosts/${h.id}/secrets`, { method: 'POST', body: { name: 'S', value: 'owner-only-value' } }), 201);
    const tsecret = await expectJson<{ id: string }>(await tenantFetch(owner.apiKey, `${OC}/secrets`, { method: 'POST', body: { name: 'T', value: 'tenant-only-value' } }), 201);
    const tunnel = await expectJson<{ id: string }>(
      await tenantFetch(owner.apiKey, `${OC}/hosts/${h.id}/tunnels`, { method: 'POST', body: { target_port: 3000, auth_mode: 'tenant_only' } }),
      201,
    );
    // A session whose model is a cluster of the owner's other (offline) host: no member serves, it ends failed, model_error.
    const gpu = await registerTenantHost(owner.apiKey, { name: 'owners-gpu' });
    const cluster = await expectJson<{ id: string }>(await tenantFetch(owner.apiKey, `${OC}/clusters`, { method: 'POST', body: { name: 'owners', model: 'hangar-tiny', host_ids: [gpu.id] } }), 201);
    const session = await expectJson<{ id: string }>(await tenantFetch(owner.apiKey, `${OC}/hosts/${h.id}/agent/dispatch`, { method: 'POST', body: { task: 'owner task', model_id: cluster.id } }), 201);
    const state = async () =>
      Promise.all(
        [`${OC}/hosts/${h.id}`, `${OC}/hosts/${h.id}/exec`, `${OC}/hosts/${h.id}/secrets`, `${OC}/hosts/${h.id}/tunnels`, `${OC}/secrets`, `${OC}/hosts`].map(async (path) =>
          (await tenantFetch(owner.apiKey, path)).text(),
        ),
      );
    const before = await state();
    const seenByAgent = peer.requests.length;
    const fill = (path: string) => path.replace('{job}', job.id).replace('{secret}', secret.id).replace('{tsecret}', tsecret.id).replace('{tunnel}', tunnel.id).replace('{session}', session.id);

    const intruder = await createTenant();
    for (const { method, path, body } of HOST_ROUTE_SAMPLES) {
      const res = await tenantFetch(intruder.apiKey, `${OC}/hosts/${h.id}${fill(path)}`, init(method, body));
      const text = await res.clone().text();
      const err = await expectError(res, 404, 'NOT_FOUND');
      expect(err.error.message, `${method} ${path}`).toBe('host not found');
      for (const leak of [owner.orgId, 'owners-box', 'owner-output', 'owner-only-value']) expect(text, `${method} ${path}`).not.toContain(leak);
    }
    for (const { method, path, body } of TENANT_SECRET_ROUTE_SAMPLES) {
      const err = await expectError(await tenantFetch(intruder.apiKey, `${OC}${fill(path)}`, init(method, body)), 404, 'NOT_FOUND');
      expect(err.error.message, `${method} ${path}`).toBe('secret not found');
    }
    expect(await state()).toEqual(before);
    expect(peer.requests.slice(seenByAgent)).toEqual([]);
    expect(await expectJson(await tenantFetch(intruder.apiKey, `${OC}/hosts`), 200)).toMatchObject({ data: [], meta: { total: 0 } });
    expect(await expectJson(await tenantFetch(intruder.apiKey, `${OC}/secrets`), 200)).toMatchObject({ data: [] });
  });
});

describe('tenant host ids', () => {
  it('a host id that cannot be an id is a 400 "invalid host id" on every host route; a well-formed unknown one a 404', async () => {
    const t = await createTenant();
    for (const bad of ['not-a-uuid', '123', '550e8400-e29b-41d4-a716-44665544000Z']) {
      for (const { method, path, body } of HOST_ROUTE_SAMPLES) {
        const url = `${OC}/hosts/${bad}${path.replace('{job}', crypto.randomUUID()).replace('{secret}', crypto.randomUUID()).replace('{tunnel}', crypto.randomUUID()).replace('{session}', crypto.randomUUID())}`;
        const err = await expectError(await tenantFetch(t.apiKey, url, init(method, body)), 400, 'INVALID_ID');
        expect(err.error.message, `${method} ${url}`).toBe('invalid host id');
      }
    }
    await expectError(await tenantFetch(t.apiKey, `${OC}/hosts/${crypto.randomUUID()}/exec`, { method: 'POST', body: { command: 'true' } }), 404, 'NOT_FOUND');
  });
});
