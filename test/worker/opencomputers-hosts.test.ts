import { SELF, env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import type { HostObject } from '../../durable-objects/host-object.ts';
import { describe, expect, it } from 'vitest';
import { AGENT_HOST_PATH, AGENT_WHOAMI_PATH } from '../../schema/protocol.ts';
import { createTenant, expectError, expectJson, tenantFetch } from './helpers.ts';
import { registerHost, sleep, useAgentPeers } from './agent-peer.ts';
import { HostModePeer, OC, registerTenantHost } from './host-mode-peer.ts';
import { SseReader } from '../e2e/sse.ts';
import { sha256Hex } from '../../worker/http/ids.ts';

useAgentPeers();

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type HostView = Record<string, unknown> & { id: string; status: string; data: Record<string, unknown> };

const getHost = async (apiKey: string, id: string) => expectJson<HostView>(await tenantFetch(apiKey, `${OC}/hosts/${id}`), 200);

async function waitForStatus(apiKey: string, id: string, status: string): Promise<HostView> {
  for (let i = 0; i < 200; i++) {
    const h = await getHost(apiKey, id);
    if (h.status === status) return h;
    await sleep(20);
  }
  throw new Error(`host ${id} never became ${status}; last ${(await getHost(apiKey, id)).status}`);
}

const whoami = (key: string) => SELF.fetch(`https://agent.test${AGENT_WHOAMI_PATH}`, { headers: { authorization: `Bearer ${key}` } });

describe('tenant hosts: register, list, get, patch', () => {
  it('register answers 201 with a UUID v4 id, a host key shown once, status pending, and the page shape bare and under data', async () => {
    const t = await createTenant();
    const r = await tenantFetch(t.apiKey, `${OC}/hosts`, { method: 'POST', body: { name: 'my-mac', region: 'us-east', labels: { env: 'prod' } } });
    const body = await expectJson<HostView & { host_key: string }>(r, 201);
    expect(body.id).toMatch(UUID_V4);
    expect(body.host_key).toMatch(/^hk_[A-Za-z0-9_-]{43}$/);
    expect(body).toMatchObject({ name: 'my-mac', region: 'us-east', status: 'pending', tenant_id: t.orgId, labels: { env: 'prod' } });
    expect(body.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(body.data).toMatchObject({ id: body.id, host_key: body.host_key });
    const got = await getHost(t.apiKey, body.id);
    expect(JSON.stringify(got)).not.toContain(body.host_key);
    expect(got).toMatchObject({ id: body.id, status: 'pending', os: null, agent_version: null });
    // Stored only as its sha256: no column of the row holds the key.
    const row = await env.DB.prepare('SELECT * FROM hosts WHERE id = ?').bind(body.id).first<Record<string, unknown>>();
    expect(row!.key_hash).toBe(await sha256Hex(body.host_key));
    expect(JSON.stringify(row)).not.toContain(body.host_key);
    // The key is the agent's: whoami names a tenant host.
    expect(await expectJson(await whoami(body.host_key), 200)).toEqual({ host_id: body.id, kind: 'byo', name: 'my-mac' });
  });

  it('lists newest first with meta {total, page, per_page} and page, paged by page/per_page', async () => {
    const t = await createTenant();
    const ids: string[] = [];
    for (const name of ['a', 'b', 'c']) ids.push((await registerTenantHost(t.apiKey, { name })).id);
    const all = await expectJson<{ data: { id: string }[]; meta: unknown; page: unknown }>(await tenantFetch(t.apiKey, `${OC}/hosts`), 200);
    expect(all.data.map((h) => h.id)).toEqual([...ids].reverse());
    expect(all.meta).toEqual({ total: 3, page: 1, per_page: 20 });
    expect(all.page).toMatchObject({ page: 1, page_size: 20, per_page: 20, total: 3 });
    const p2 = await expectJson<{ data: { id: string }[]; meta: unknown }>(await tenantFetch(t.apiKey, `${OC}/hosts?per_page=1&page=2`), 200);
    expect(p2.data.map((h) => h.id)).toEqual([ids[1]]);
    expect(p2.meta).toEqual({ total: 3, page: 2, per_page: 1 });
    await expectError(await tenantFetch(t.apiKey, `${OC}/hosts?per_page=101`), 400, 'VALIDATION_FAILED');
  });

  it('patch changes name, labels and region; an empty or malformed patch is a 400 that changes nothing', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey, { name: 'old', labels: { a: '1' } });
    const patched = await expectJson<HostView>(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}`, { method: 'PATCH', body: { name: 'new', labels: { b: '2' }, region: 'eu-west' } }), 200);
    expect(patched).toMatchObject({ name: 'new', labels: { b: '2' }, region: 'eu-west' });
    await expectError(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}`, { method: 'PATCH', body: {} }), 400, 'VALIDATION_FAILED');
    await expectError(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}`, { method: 'PATCH', body: { labels: { 'bad key': 'x' } } }), 400, 'VALIDATION_FAILED');
    await expectError(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}`, { method: 'PATCH', body: { region: 'UPPER' } }), 400, 'VALIDATION_FAILED');
    expect(await getHost(t.apiKey, h.id)).toMatchObject({ name: 'new', labels: { b: '2' }, region: 'eu-west' });
    const missing = await expectError(await tenantFetch(t.apiKey, `${OC}/hosts`, { method: 'POST', body: { labels: {} } }), 400, 'VALIDATION_FAILED');
    expect(missing.error.message).toBe('name is required');
  });

  it('a fleet host, a missing host and a malformed id are 404, 404 and 400 to a tenant', async () => {
    const t = await createTenant();
    const fleet = await registerHost();
    expect((await expectError(await tenantFetch(t.apiKey, `${OC}/hosts/${fleet.id}`), 404, 'NOT_FOUND')).error.message).toBe('host not found');
    await expectError(await tenantFetch(t.apiKey, `${OC}/hosts/${crypto.randomUUID()}`), 404, 'NOT_FOUND');
    expect((await expectError(await tenantFetch(t.apiKey, `${OC}/hosts/not-an-id`), 400, 'INVALID_ID')).error.message).toBe('invalid host id');
  });

  it('tenant hosts are never picked to place a managed computer', async () => {
    const t = await createTenant();
    const region = `byo-only-${crypto.randomUUID().slice(0, 6)}`;
    const h = await registerTenantHost(t.apiKey, { name: 'box', region });
    await HostModePeer.online(h.key);
    await waitForStatus(t.apiKey, h.id, 'online');
    const r = await tenantFetch(t.apiKey, '/api/v1/computers', { method: 'POST', body: { name: 'c', template_type: 'miosa-desktop', region } });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
  });
});

describe('tenant host status follows its agent', () => {
  it('online on hello, with what the agent reported of the machine; offline when the socket goes', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const peer = await HostModePeer.online(h.key, { os: 'darwin', arch: 'arm64', cpus: 10, memory_mb: 16384, agent_version: '9.9.9', os_release: '23.1.0' });
    const online = await waitForStatus(t.apiKey, h.id, 'online');
    expect(online).toMatchObject({
      os: 'darwin',
      arch: 'arm64',
      cpus: 10,
      memory_mb: 16384,
      agent_version: '9.9.9',
      os_release: '23.1.0',
      hostname: 'box.test',
      user: { name: 'alice', home: '/home/alice', shell: '/bin/zsh' },
      terminal: true,
      status_reason: null,
    });
    expect(online.last_seen_at).not.toBeNull();
    peer.close();
    await waitForStatus(t.apiKey, h.id, 'offline');
  });

  it('a failed preflight puts the host in error with the reason and closes the agent with 4412', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const events = new SseReader(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/events`));
    const peer = await HostModePeer.connect(h.key, { fault: 'the home directory /home/x is missing' });
    expect((await peer.closed).code).toBe(4412);
    expect(await waitForStatus(t.apiKey, h.id, 'error')).toMatchObject({ status_reason: 'the home directory /home/x is missing' });
    // The host's event stream says so too.
    const event = (await events.next())!;
    expect(event.event).toBe('status_change');
    expect(JSON.parse(event.data)).toMatchObject({ host_id: h.id, data: { status: 'error', reason: 'the home directory /home/x is missing' } });
    await events.close();
    // A fixed agent comes back online.
    await HostModePeer.online(h.key);
    expect(await waitForStatus(t.apiKey, h.id, 'online')).toMatchObject({ status_reason: null });
  });

  it('an agent speaking an older protocol puts the host in error and is closed with 4406', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const peer = await HostModePeer.connect(h.key, { protocol: { major: 1, minor: 2 } });
    expect((await peer.closed).code).toBe(4406);
    const host = await waitForStatus(t.apiKey, h.id, 'error');
    expect(String(host.status_reason)).toContain('1.2');
  });

  it('an agent silent past the watchdog (no heartbeat for 45 s) is closed with 4408 and the host goes offline', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const peer = await HostModePeer.online(h.key);
    await waitForStatus(t.apiKey, h.id, 'online');
    const stub = env.HOST.get(env.HOST.idFromName(h.id));
    // Its last word, as the object remembers it, an hour ago.
    await runInDurableObject(stub, async (obj: HostObject, state) => {
      (obj.tenant as unknown as { lastMessageAt: number }).lastMessageAt = 0;
      await state.storage.put('last_message_at', Date.now() - 3600_000);
    });
    await runDurableObjectAlarm(stub);
    expect((await peer.closed).code).toBe(4408);
    await waitForStatus(t.apiKey, h.id, 'offline');
  });

  it('a malformed message closes the agent with 4400', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const peer = await HostModePeer.online(h.key);
    peer.send({ type: 'heartbeat', load1: 'high' });
    expect((await peer.closed).code).toBe(4400);
  });
});

describe('revoking a tenant host', () => {
  it('answers 204, closes the agent at once with 4401, and the key never authenticates again', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const peer = await HostModePeer.online(h.key);
    const r = await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}`, { method: 'DELETE' });
    expect(r.status).toBe(204);
    expect(await r.text()).toBe('');
    expect(await peer.closed).toMatchObject({ code: 4401, reason: 'host revoked' });
    expect(await getHost(t.apiKey, h.id)).toMatchObject({ status: 'revoked' });
    await expectError(await whoami(h.key), 401, 'UNAUTHORIZED');
    const again = await SELF.fetch(`https://agent.test${AGENT_HOST_PATH}`, { headers: { Upgrade: 'websocket', authorization: `Bearer ${h.key}` } });
    expect(again.status).toBe(401);
    // Revoking again is a 204 too; the host stays listed as revoked.
    expect((await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}`, { method: 'DELETE' })).status).toBe(204);
    const list = await expectJson<{ data: { id: string; status: string }[] }>(await tenantFetch(t.apiKey, `${OC}/hosts`), 200);
    expect(list.data).toEqual([expect.objectContaining({ id: h.id, status: 'revoked' })]);
  });

  it('another tenant cannot revoke it', async () => {
    const [a, b] = [await createTenant(), await createTenant()];
    const h = await registerTenantHost(a.apiKey);
    await expectError(await tenantFetch(b.apiKey, `${OC}/hosts/${h.id}`, { method: 'DELETE' }), 404, 'NOT_FOUND');
    expect(await getHost(a.apiKey, h.id)).toMatchObject({ status: 'pending' });
  });
});
