import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApiKey, createTenant, createWorkspace, expectError, expectJson, operatorFetch, tenantFetch, uniqueSlug } from './helpers.ts';

interface Org {
  id: string;
  name: string;
  slug: string;
  credits: number;
  rate_limit_per_minute: number | null;
  default_workspace_id: string;
  default_project_id: string;
}
interface Page {
  page: number;
  page_size: number;
  total: number;
}

const sha256Hex = async (s: string) =>
  [...new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s)))].map((x) => x.toString(16).padStart(2, '0')).join('');

describe('admin: organizations', () => {
  it('create returns the org with its default workspace and project, and get/list show it', async () => {
    const slug = uniqueSlug('acme');
    const res = await operatorFetch('/api/v1/admin/organizations', { method: 'POST', body: { name: 'Acme', slug, credits: 250, rate_limit_per_minute: 120 } });
    const { data } = await expectJson<{ data: Org }>(res, 201);
    expect(data).toMatchObject({ name: 'Acme', slug, credits: 250, rate_limit_per_minute: 120 });
    const ws = await env.DB.prepare('SELECT org_id, is_default FROM workspaces WHERE id = ?').bind(data.default_workspace_id).first();
    expect(ws).toEqual({ org_id: data.id, is_default: 1 });
    const pr = await env.DB.prepare('SELECT workspace_id, is_default FROM projects WHERE id = ?').bind(data.default_project_id).first();
    expect(pr).toEqual({ workspace_id: data.default_workspace_id, is_default: 1 });
    // The opening balance is explained by a transaction.
    const tx = await expectJson<{ data: { amount: number; reason: string }[] }>(await operatorFetch(`/api/v1/admin/organizations/${data.id}/credits/transactions`), 200);
    expect(tx.data).toEqual([expect.objectContaining({ amount: 250, reason: 'initial credits' })]);

    expect((await expectJson<{ data: Org }>(await operatorFetch(`/api/v1/admin/organizations/${data.id}`), 200)).data).toEqual(data);
    const list = await expectJson<{ data: Org[]; page: Page }>(await operatorFetch('/api/v1/admin/organizations?page_size=100'), 200);
    expect(list.data.map((o) => o.id)).toContain(data.id);
    expect(list.page.total).toBeGreaterThanOrEqual(1);
  });

  it('a taken slug is 409, bad input is a 400 naming the field, an unknown org is 404', async () => {
    const slug = uniqueSlug('dup');
    await expectJson(await operatorFetch('/api/v1/admin/organizations', { method: 'POST', body: { name: 'A', slug } }), 201);
    await expectError(await operatorFetch('/api/v1/admin/organizations', { method: 'POST', body: { name: 'B', slug } }), 409, 'CONFLICT');
    const missing = await expectError(await operatorFetch('/api/v1/admin/organizations', { method: 'POST', body: { slug: uniqueSlug() } }), 400, 'VALIDATION_FAILED');
    expect(missing.error.message).toBe('name is required');
    const neg = await expectError(await operatorFetch('/api/v1/admin/organizations', { method: 'POST', body: { name: 'x', credits: -1 } }), 400, 'VALIDATION_FAILED');
    expect(neg.error.message).toContain('credits');
    const rl = await expectError(await operatorFetch('/api/v1/admin/organizations', { method: 'POST', body: { name: 'x', rate_limit_per_minute: 0 } }), 400, 'VALIDATION_FAILED');
    expect(rl.error.message).toContain('rate_limit_per_minute');
    await expectError(await operatorFetch(`/api/v1/admin/organizations/${crypto.randomUUID()}`), 404, 'NOT_FOUND');
  });

  it('patch changes the name and the rate limit, and null restores the default limit', async () => {
    const t = await createTenant();
    const patched = await expectJson<{ data: Org }>(
      await operatorFetch(`/api/v1/admin/organizations/${t.orgId}`, { method: 'PATCH', body: { name: 'Renamed', rate_limit_per_minute: 42 } }),
      200,
    );
    expect(patched.data).toMatchObject({ name: 'Renamed', rate_limit_per_minute: 42 });
    const reset = await expectJson<{ data: Org }>(await operatorFetch(`/api/v1/admin/organizations/${t.orgId}`, { method: 'PATCH', body: { rate_limit_per_minute: null } }), 200);
    expect(reset.data).toMatchObject({ name: 'Renamed', rate_limit_per_minute: null });
    await expectError(await operatorFetch(`/api/v1/admin/organizations/${t.orgId}`, { method: 'PATCH', body: {} }), 400, 'VALIDATION_FAILED');
  });
});

describe('admin: API keys', () => {
  it('the key is shown once; lists show only the prefix; revoke stops it', async () => {
    const t = await createTenant();
    const created = await createApiKey(t.orgId, { name: 'ci', mode: 'test' });
    expect(created.key).toMatch(/^msk_test_[A-Za-z0-9_-]{43}$/);
    const listRes = await operatorFetch(`/api/v1/admin/organizations/${t.orgId}/api-keys`);
    const listText = await listRes.clone().text();
    expect(listText).not.toContain(created.key);
    expect(listText).not.toContain('key_hash');
    const list = await expectJson<{ data: { id: string; key_prefix: string; status: string; mode: string }[]; page: Page }>(listRes, 200);
    expect(list.page.total).toBe(2);
    const row = list.data.find((k) => k.id === created.id)!;
    expect(row).toMatchObject({ status: 'active', mode: 'test' });
    expect(created.key.startsWith(row.key_prefix)).toBe(true);
    expect(row.key_prefix.length).toBeLessThan(16);

    const revoked = await expectJson<{ data: { status: string; revoked_at: string } }>(
      await operatorFetch(`/api/v1/admin/organizations/${t.orgId}/api-keys/${created.id}`, { method: 'DELETE' }),
      200,
    );
    expect(revoked.data.status).toBe('revoked');
    await expectError(await tenantFetch(created.key, '/api/v1/workspaces'), 401, 'UNAUTHORIZED');
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/workspaces'), 200);
  });

  it("scopes must name the org's own workspaces and projects", async () => {
    const t1 = await createTenant();
    const t2 = await createTenant();
    const bad = await expectError(
      await operatorFetch(`/api/v1/admin/organizations/${t1.orgId}/api-keys`, { method: 'POST', body: { workspace_ids: [t2.workspaceId] } }),
      400,
      'VALIDATION_FAILED',
    );
    expect(bad.error.message).toContain('workspace_ids');
    const ws = await createWorkspace(t1.apiKey, uniqueSlug());
    await expectError(
      await operatorFetch(`/api/v1/admin/organizations/${t1.orgId}/api-keys`, { method: 'POST', body: { workspace_ids: [ws], project_ids: [t1.projectId] } }),
      400,
      'VALIDATION_FAILED',
    );
    const ok = await createApiKey(t1.orgId, { workspaceIds: [ws] });
    const got = await expectJson<{ data: { workspace_ids: string[]; project_ids: null } }>(await operatorFetch(`/api/v1/admin/organizations/${t1.orgId}/api-keys/${ok.id}`), 200);
    expect(got.data).toMatchObject({ workspace_ids: [ws], project_ids: null });
    // A key of one org is not reachable under another.
    await expectError(await operatorFetch(`/api/v1/admin/organizations/${t2.orgId}/api-keys/${ok.id}`, { method: 'DELETE' }), 404, 'NOT_FOUND');
  });
});

describe('admin: credits', () => {
  it('grants and negative adjustments move the balance and are listed newest first', async () => {
    const t = await createTenant({ credits: 10 });
    const base = `/api/v1/admin/organizations/${t.orgId}/credits`;
    const grant = await expectJson<{ data: { balance: number; transaction: { amount: number } } }>(
      await operatorFetch(base, { method: 'POST', body: { amount: 5.5, reason: 'promo' } }),
      201,
    );
    expect(grant.data.balance).toBe(15.5);
    const adj = await expectJson<{ data: { balance: number } }>(await operatorFetch(base, { method: 'POST', body: { amount: -3, reason: 'refund reversal' } }), 201);
    expect(adj.data.balance).toBe(12.5);
    expect((await expectJson<{ data: { balance: number } }>(await operatorFetch(base), 200)).data.balance).toBe(12.5);
    const tx = await expectJson<{ data: { amount: number; reason: string }[]; page: Page }>(await operatorFetch(`${base}/transactions?page_size=2`), 200);
    expect(tx.data.map((x) => x.amount)).toEqual([-3, 5.5]);
    expect(tx.page).toMatchObject({ page: 1, page_size: 2, total: 3 });
    const p2 = await expectJson<{ data: { amount: number }[] }>(await operatorFetch(`${base}/transactions?page_size=2&page=2`), 200);
    expect(p2.data.map((x) => x.amount)).toEqual([10]);
    await expectError(await operatorFetch(base, { method: 'POST', body: { amount: 0, reason: 'x' } }), 400, 'VALIDATION_FAILED');
    const noReason = await expectError(await operatorFetch(base, { method: 'POST', body: { amount: 1 } }), 400, 'VALIDATION_FAILED');
    expect(noReason.error.message).toBe('reason is required');
  });
});

describe('admin: hosts', () => {
  it('register shows the host key once and stores only its hash; list, get and revoke', async () => {
    const name = uniqueSlug('kvm');
    const res = await operatorFetch('/api/v1/admin/hosts', { method: 'POST', body: { name, region: 'eu-west', labels: { rack: 'r1' } } });
    const { data } = await expectJson<{ data: { id: string; host_key: string; status: string; labels: Record<string, string>; kind: string } }>(res, 201);
    expect(data.host_key).toMatch(/^hk_[A-Za-z0-9_-]{43}$/);
    expect(data).toMatchObject({ status: 'pending', kind: 'fleet', labels: { rack: 'r1' } });
    const row = await env.DB.prepare('SELECT key_hash FROM hosts WHERE id = ?').bind(data.id).first<{ key_hash: string }>();
    expect(row?.key_hash).toBe(await sha256Hex(data.host_key));

    const got = await operatorFetch(`/api/v1/admin/hosts/${data.id}`);
    const gotText = await got.clone().text();
    expect(gotText).not.toContain(data.host_key);
    expect(gotText).not.toContain('key_hash');
    expect((await expectJson<{ data: { name: string } }>(got, 200)).data.name).toBe(name);

    const list = await expectJson<{ data: { id: string }[] }>(await operatorFetch('/api/v1/admin/hosts?region=eu-west&status=pending&page_size=100'), 200);
    expect(list.data.map((h) => h.id)).toContain(data.id);
    const revoked = await expectJson<{ data: { status: string } }>(await operatorFetch(`/api/v1/admin/hosts/${data.id}`, { method: 'DELETE' }), 200);
    expect(revoked.data.status).toBe('revoked');
    const after = await expectJson<{ data: { id: string }[] }>(await operatorFetch('/api/v1/admin/hosts?status=pending&page_size=100'), 200);
    expect(after.data.map((h) => h.id)).not.toContain(data.id);
    await expectError(await operatorFetch('/api/v1/admin/hosts?status=bogus'), 400, 'VALIDATION_FAILED');
    await expectError(await operatorFetch(`/api/v1/admin/hosts/${crypto.randomUUID()}`), 404, 'NOT_FOUND');
    await expectError(await operatorFetch('/api/v1/admin/hosts', { method: 'POST', body: { name: 'x', region: 'EU West' } }), 400, 'VALIDATION_FAILED');
  });
});

describe('pagination', () => {
  it('page and page_size slice the list; per_page is an alias; page_size over 100 is a 400', async () => {
    const t = await createTenant();
    for (let i = 0; i < 4; i++) await createWorkspace(t.apiKey, `ws-${i}`);
    const p1 = await expectJson<{ data: { slug: string }[]; page: Page }>(await tenantFetch(t.apiKey, '/api/v1/workspaces?page_size=2'), 200);
    expect(p1.page).toMatchObject({ page: 1, page_size: 2, total: 5 });
    expect(p1.data).toHaveLength(2);
    const p3 = await expectJson<{ data: { slug: string }[]; page: Page }>(await tenantFetch(t.apiKey, '/api/v1/workspaces?per_page=2&page=3'), 200);
    expect(p3.page).toMatchObject({ page: 3, page_size: 2, total: 5 });
    expect(p3.data).toHaveLength(1);
    const all = await expectJson<{ data: { slug: string }[]; page: Page }>(await tenantFetch(t.apiKey, '/api/v1/workspaces'), 200);
    expect(all.page.page_size).toBe(20);
    expect(all.data.map((w) => w.slug)).toEqual(['default', 'ws-0', 'ws-1', 'ws-2', 'ws-3']);
    expect((await expectJson<{ page: Page }>(await tenantFetch(t.apiKey, '/api/v1/workspaces?page_size=100'), 200)).page.page_size).toBe(100);
    const over = await expectError(await tenantFetch(t.apiKey, '/api/v1/workspaces?page_size=101'), 400, 'VALIDATION_FAILED');
    expect(over.error.message).toContain('page_size');
    await expectError(await operatorFetch('/api/v1/admin/organizations?per_page=101'), 400, 'VALIDATION_FAILED');
    await expectError(await tenantFetch(t.apiKey, '/api/v1/workspaces?page=0'), 400, 'VALIDATION_FAILED');
  });
});
