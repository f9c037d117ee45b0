import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson, tenantFetch } from './helpers.ts';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { HostModePeer, OC, registerTenantHost } from './host-mode-peer.ts';
import { readSse as readRaw } from '../e2e/sse.ts';
import { MASK, SecretSet } from '../../durable-objects/host/secret-mask.ts';

useAgentPeers();

type Secret = { id: string; name: string; description: string | null; host_id: string | null; tenant_id: string };

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await sleep(20);
  }
  throw new Error(`not within 4 s: ${what}`);
}

describe('secrets: routes', () => {
  it('tenant and host secrets: created, listed, patched and deleted; the value never comes back; names unique per scope', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const post = (path: string, body: unknown) => tenantFetch(t.apiKey, `${OC}${path}`, { method: 'POST', body });
    const created = await expectJson<Secret>(await post('/secrets', { name: 'GITHUB_TOKEN', value: 'ghp_supersecret', description: 'CI token' }), 201);
    expect(created).toMatchObject({ name: 'GITHUB_TOKEN', description: 'CI token', host_id: null, tenant_id: t.orgId });
    const onHost = await expectJson<Secret>(await post(`/hosts/${h.id}/secrets`, { name: 'GITHUB_TOKEN', value: 'ghp_hostvalue' }), 201);
    expect(onHost).toMatchObject({ host_id: h.id, description: null });
    const dup = await expectError(await post('/secrets', { name: 'GITHUB_TOKEN', value: 'x' }), 409, 'CONFLICT');
    expect(dup.error.message).toContain('GITHUB_TOKEN');
    await expectError(await post(`/hosts/${h.id}/secrets`, { name: 'GITHUB_TOKEN', value: 'x' }), 409, 'CONFLICT');
    await expectError(await post('/secrets', { name: '1BAD', value: 'x' }), 400, 'VALIDATION_FAILED');
    await expectError(await post('/secrets', { name: 'OK', value: 'a\u0000b' }), 400, 'VALIDATION_FAILED');

    const lists = [await tenantFetch(t.apiKey, `${OC}/secrets`), await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/secrets`)];
    const texts = await Promise.all(lists.map((r) => r.text()));
    for (const text of texts) expect(text).not.toMatch(/ghp_/);
    expect((JSON.parse(texts[0]) as { data: Secret[] }).data.map((s) => s.id)).toEqual([created.id]);
    expect((JSON.parse(texts[1]) as { data: Secret[] }).data.map((s) => s.id)).toEqual([onHost.id]);

    const patched = await expectJson<Secret>(await tenantFetch(t.apiKey, `${OC}/secrets/${created.id}`, { method: 'PATCH', body: { value: 'ghp_rotated', description: null } }), 200);
    expect(patched.description).toBeNull();
    expect(JSON.stringify(patched)).not.toContain('ghp_');
    await expectError(await tenantFetch(t.apiKey, `${OC}/secrets/${created.id}`, { method: 'PATCH', body: {} }), 400, 'VALIDATION_FAILED');
    // A host secret is not reachable through the tenant scope, nor the other way round.
    await expectError(await tenantFetch(t.apiKey, `${OC}/secrets/${onHost.id}`), 404, 'NOT_FOUND');
    await expectError(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/secrets/${created.id}`), 404, 'NOT_FOUND');

    // At rest the value is ciphertext.
    const rows = await env.DB.prepare('SELECT ciphertext FROM oc_secrets WHERE org_id = ?').bind(t.orgId).all<{ ciphertext: string }>();
    for (const r of rows.results) expect(atob(r.ciphertext)).not.toContain('ghp_');

    expect((await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/secrets/${onHost.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await tenantFetch(t.apiKey, `${OC}/secrets/${created.id}`, { method: 'DELETE' })).status).toBe(204);
    await expectError(await tenantFetch(t.apiKey, `${OC}/secrets/${created.id}`), 404, 'NOT_FOUND');
  });
});

describe('secrets reach the agent and are masked', () => {
  it('the agent gets the tenant and host secrets (the host winning a clash) on connecting and within the request that changes one', async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    const post = (path: string, body: unknown) => tenantFetch(t.apiKey, `${OC}${path}`, { method: 'POST', body });
    await expectJson(await post('/secrets', { name: 'SHARED', value: 'tenant-shared' }), 201);
    await expectJson(await post('/secrets', { name: 'CLASH', value: 'from-tenant' }), 201);
    const hostClash = await expectJson<Secret>(await post(`/hosts/${h.id}/secrets`, { name: 'CLASH', value: 'from-host' }), 201);
    const peer = await HostModePeer.online(h.key);
    await until(() => peer.secrets !== null, 'secrets.set after the welcome');
    expect(peer.secrets).toEqual({ SHARED: 'tenant-shared', CLASH: 'from-host' });
    // A change is delivered before the request answers.
    await expectJson(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/secrets/${hostClash.id}`, { method: 'PATCH', body: { value: 'rotated-host' } }), 200);
    expect(peer.secrets).toEqual({ SHARED: 'tenant-shared', CLASH: 'rotated-host' });
    await expectJson(await post('/secrets', { name: 'NEWER', value: 'arrives-now' }), 201);
    expect(peer.secrets).toMatchObject({ NEWER: 'arrives-now' });
  });

  it("a job's output shows *** for a secret's value, also when a chunk boundary cuts it, in the record and the stream", async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    await expectJson(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/secrets`, { method: 'POST', body: { name: 'TOKEN', value: 'sk-live-1234567890' } }), 201);
    const peer = await HostModePeer.online(h.key);
    const posted = tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/exec`, { method: 'POST', body: { command: 'printenv TOKEN' } });
    const p = (await peer.take('proc.start')).params.proc_id;
    peer.output(p, 'stdout', 'token=sk-live-12345');
    peer.output(p, 'stdout', '67890 and again sk-live-1234567890\n');
    peer.output(p, 'stderr', 'ends with sk-live-');
    peer.exit(p, 0);
    const job = await expectJson<{ id: string; stdout: string; stderr: string }>(await posted, 200);
    expect(job.stdout).toBe(`token=${MASK} and again ${MASK}\n`);
    expect(job.stderr).toBe('ends with sk-live-');
    const raw = await (await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/exec/${job.id}/stream`)).text();
    expect(raw).not.toContain('1234567890');
    const out = (await readRaw(await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/exec/${job.id}/stream`)))
      .filter((m) => m.event === 'stdout')
      .map((m) => (JSON.parse(m.data) as { data: string }).data)
      .join('');
    expect(out).toBe(`token=${MASK} and again ${MASK}\n`);
  });
});

describe('SecretSet (masking across chunks)', () => {
  const feed = (set: SecretSet, chunks: string[]) => {
    let held = '';
    let out = '';
    chunks.forEach((c, i) => {
      const r = set.mask(held + c, i === chunks.length - 1);
      out += r.shown;
      held = r.held;
    });
    return out;
  };

  it('masks values cut anywhere, the longest of overlapping values first, and never short values', () => {
    const set = new SecretSet(['hunter22', 'hunter2222', 'abc']);
    const text = 'pw hunter2222, pw hunter22.';
    for (let cut = 0; cut <= text.length; cut++) {
      expect(feed(set, [text.slice(0, cut), text.slice(cut)]), `cut at ${cut}`).toBe('pw ***, pw ***.');
    }
    expect(feed(set, ['h', 'u', 'n', 't', 'e', 'r', '2', '2', '!'])).toBe('***!');
    expect(feed(set, ['abc'])).toBe('abc');
  });

  it('holds back only an end that may still become a value, and lets it go at the end', () => {
    const set = new SecretSet(['secretvalue']);
    expect(set.mask('plain text, then secr', false)).toEqual({ shown: 'plain text, then ', held: 'secr' });
    expect(set.mask('secr', true)).toEqual({ shown: 'secr', held: '' });
    expect(new SecretSet([]).mask('anything', false)).toEqual({ shown: 'anything', held: '' });
  });
});

describe('secrets limits', () => {
  it('a scope holds at most 64 KiB of values (a host’s whole set goes to its agent in one message); past it 413, and nothing changes', async () => {
    const t = await createTenant();
    const post = (body: unknown) => tenantFetch(t.apiKey, `${OC}/secrets`, { method: 'POST', body });
    const big = await expectJson<Secret>(await post({ name: 'A', value: 'a'.repeat(32 * 1024) }), 201);
    await expectJson(await post({ name: 'B', value: 'b'.repeat(32 * 1024) }), 201);
    await expectError(await post({ name: 'C', value: 'c' }), 413, 'PAYLOAD_TOO_LARGE');
    await expectError(await post({ name: 'D', value: 'd'.repeat(32 * 1024 + 1) }), 400, 'VALIDATION_FAILED');
    // Replacing a value counts the new one instead of the old.
    await expectJson(await tenantFetch(t.apiKey, `${OC}/secrets/${big.id}`, { method: 'PATCH', body: { value: 'small' } }), 200);
    await expectJson(await post({ name: 'C', value: 'c' }), 201);
    const list = await expectJson<{ data: Secret[] }>(await tenantFetch(t.apiKey, `${OC}/secrets`), 200);
    expect(list.data.map((s) => s.name)).toEqual(['A', 'B', 'C']);
  });
});
