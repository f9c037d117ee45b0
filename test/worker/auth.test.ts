import { env } from 'cloudflare:test';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { apiFetch, createApiKey, createTenant, expectError, expectJson, operatorFetch, tenantFetch, uniqueSlug } from './helpers.ts';

const secret = () => new TextEncoder().encode(env.JWT_SECRET);
const nowS = () => Math.floor(Date.now() / 1000);

/** A token as a self-hoster's backend would mint it, with any field overridable. */
async function jwt(
  claims: Record<string, unknown>,
  o: { alg?: string; iss?: string; aud?: string; exp?: number | null; key?: Uint8Array } = {},
): Promise<string> {
  let b = new SignJWT(claims).setProtectedHeader({ alg: o.alg ?? 'HS256' }).setIssuer(o.iss ?? env.JWT_ISSUER).setAudience(o.aud ?? env.JWT_AUDIENCE).setIssuedAt();
  if (o.exp !== null) b = b.setExpirationTime(o.exp ?? nowS() + 300);
  return b.sign(o.key ?? secret());
}

const b64url = (v: unknown) => btoa(JSON.stringify(v)).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');

describe('API keys', () => {
  it('a valid key is accepted and a missing, garbage or unknown key is 401 in the envelope', async () => {
    const t = await createTenant();
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/workspaces'), 200);
    await expectError(await apiFetch('/api/v1/workspaces'), 401, 'UNAUTHORIZED');
    await expectError(await tenantFetch('garbage', '/api/v1/workspaces'), 401, 'UNAUTHORIZED');
    await expectError(await apiFetch('/api/v1/workspaces', { headers: { authorization: `Basic ${btoa('a:b')}` } }), 401, 'UNAUTHORIZED');
    // Right shape, one character off: the hash lookup finds nothing.
    const wrong = t.apiKey.slice(0, -1) + (t.apiKey.endsWith('A') ? 'B' : 'A');
    await expectError(await tenantFetch(wrong, '/api/v1/workspaces'), 401, 'UNAUTHORIZED');
  });

  it('only the sha256 of a key is stored', async () => {
    const t = await createTenant();
    const row = await env.DB.prepare('SELECT key_hash, key_prefix FROM api_keys WHERE id = ?').bind(t.keyId).first<{ key_hash: string; key_prefix: string }>();
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(t.apiKey));
    const hex = [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, '0')).join('');
    expect(row?.key_hash).toBe(hex);
    expect(t.apiKey.startsWith(row!.key_prefix)).toBe(true);
    const dump = JSON.stringify(await env.DB.prepare('SELECT * FROM api_keys WHERE id = ?').bind(t.keyId).first());
    expect(dump).not.toContain(t.apiKey);
  });

  it('test-mode keys are accepted and carry their mode', async () => {
    const t = await createTenant({ mode: 'test' });
    expect(t.apiKey).toMatch(/^msk_test_/);
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/workspaces'), 200);
  });

  it('a revoked key is 401 from the moment it is revoked', async () => {
    const t = await createTenant();
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/workspaces'), 200);
    await expectJson(await operatorFetch(`/api/v1/admin/organizations/${t.orgId}/api-keys/${t.keyId}`, { method: 'DELETE' }), 200);
    const err = await expectError(await tenantFetch(t.apiKey, '/api/v1/workspaces'), 401, 'UNAUTHORIZED');
    expect(err.error.message).toMatch(/revoked/);
  });

  it('use of a key sets last_used_at', async () => {
    const t = await createTenant();
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/workspaces'), 200);
    // Written after the response (waitUntil); poll briefly.
    let last: string | null = null;
    for (let i = 0; i < 50 && !last; i++) {
      last = (await env.DB.prepare('SELECT last_used_at FROM api_keys WHERE id = ?').bind(t.keyId).first<{ last_used_at: string | null }>())!.last_used_at;
      if (!last) await new Promise((r) => setTimeout(r, 10));
    }
    expect(last).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });
});

describe('JWTs', () => {
  it('a token signed with JWT_SECRET for an existing org is accepted', async () => {
    const t = await createTenant();
    const token = await jwt({ sub: 'user-1', org_id: t.orgId });
    const body = await expectJson<{ data: { id: string }[] }>(await tenantFetch(token, '/api/v1/workspaces'), 200);
    expect(body.data.map((w) => w.id)).toEqual([t.workspaceId]);
  });

  const claimsOf = (orgId: string) => ({ sub: 'user-1', org_id: orgId });
  it.each<[string, (orgId: string) => Promise<string>]>([
    ['alg none', async (org) => `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ ...claimsOf(org), iss: env.JWT_ISSUER, aud: env.JWT_AUDIENCE, exp: nowS() + 300 })}.`],
    ['alg HS512 with the right secret', (org) => jwt(claimsOf(org), { alg: 'HS512' })],
    ['another secret', (org) => jwt(claimsOf(org), { key: new TextEncoder().encode('another-secret-that-is-long-enough-000000') })],
    ['a wrong issuer', (org) => jwt(claimsOf(org), { iss: 'someone-else' })],
    ['a wrong audience', (org) => jwt(claimsOf(org), { aud: 'another-api' })],
    ['no exp', (org) => jwt(claimsOf(org), { exp: null })],
    ['expired 45 s ago (beyond the 30 s tolerance)', (org) => jwt(claimsOf(org), { exp: nowS() - 45 })],
  ])('a token with %s is 401', async (_label, make) => {
    const t = await createTenant();
    await expectError(await tenantFetch(await make(t.orgId), '/api/v1/workspaces'), 401, 'UNAUTHORIZED');
  });

  it('a token that expired within the 30 s clock tolerance is still accepted', async () => {
    const t = await createTenant();
    await expectJson(await tenantFetch(await jwt({ sub: 'u', org_id: t.orgId }, { exp: nowS() - 10 }), '/api/v1/workspaces'), 200);
  });

  it('a token for an organization that does not exist, or without org_id, is 401', async () => {
    await expectError(await tenantFetch(await jwt({ sub: 'u', org_id: crypto.randomUUID() }), '/api/v1/workspaces'), 401, 'UNAUTHORIZED');
    await expectError(await tenantFetch(await jwt({ sub: 'u' }), '/api/v1/workspaces'), 401, 'UNAUTHORIZED');
  });

  it('workspace_ids in a token scope what it may see', async () => {
    const t = await createTenant();
    const other = await expectJson<{ data: { id: string } }>(await tenantFetch(t.apiKey, '/api/v1/workspaces', { method: 'POST', body: { name: 'Other', slug: uniqueSlug() } }), 201);
    const token = await jwt({ sub: 'u', org_id: t.orgId, workspace_ids: [other.data.id] });
    const list = await expectJson<{ data: { id: string }[] }>(await tenantFetch(token, '/api/v1/workspaces'), 200);
    expect(list.data.map((w) => w.id)).toEqual([other.data.id]);
    await expectError(await tenantFetch(token, `/api/v1/workspaces/${t.workspaceId}`), 403, 'FORBIDDEN');
  });
});

describe('POST /auth/token', () => {
  it('trades an API key for a short-lived JWT that authenticates as the same tenant', async () => {
    const t = await createTenant();
    const before = Date.now();
    const res = await apiFetch('/api/v1/auth/token', { method: 'POST', body: { api_key: t.apiKey } });
    const { data } = await expectJson<{ data: { token: string; token_type: string; expires_at: string; expires_in: number } }>(res, 200);
    expect(data.token_type).toBe('Bearer');
    expect(data.token.split('.')).toHaveLength(3);
    expect(data.expires_in).toBe(900);
    const ttl = Date.parse(data.expires_at) - before;
    expect(ttl).toBeGreaterThan(890_000);
    expect(ttl).toBeLessThanOrEqual(901_000);
    const list = await expectJson<{ data: { id: string }[] }>(await tenantFetch(data.token, '/api/v1/workspaces'), 200);
    expect(list.data.map((w) => w.id)).toEqual([t.workspaceId]);
  });

  it('accepts the key as a Bearer header and a ttl up to one hour; more is a 400 naming ttl_seconds', async () => {
    const t = await createTenant();
    const ok = await expectJson<{ data: { expires_in: number } }>(
      await tenantFetch(t.apiKey, '/api/v1/auth/token', { method: 'POST', body: { ttl_seconds: 3600 } }),
      200,
    );
    expect(ok.data.expires_in).toBe(3600);
    const err = await expectError(await tenantFetch(t.apiKey, '/api/v1/auth/token', { method: 'POST', body: { ttl_seconds: 3601 } }), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toContain('ttl_seconds');
  });

  it('refuses unknown keys and JWTs (a token cannot renew itself)', async () => {
    const t = await createTenant();
    await expectError(await apiFetch('/api/v1/auth/token', { method: 'POST', body: { api_key: 'msk_live_' + 'x'.repeat(43) } }), 401, 'UNAUTHORIZED');
    await expectError(await apiFetch('/api/v1/auth/token', { method: 'POST', body: {} }), 401, 'UNAUTHORIZED');
    const token = await jwt({ sub: 'u', org_id: t.orgId });
    await expectError(await tenantFetch(token, '/api/v1/auth/token', { method: 'POST', body: {} }), 401, 'UNAUTHORIZED');
  });

  it("carries the key's scope, and stops working when the key is revoked", async () => {
    const t = await createTenant();
    const ws = await expectJson<{ data: { id: string } }>(await tenantFetch(t.apiKey, '/api/v1/workspaces', { method: 'POST', body: { name: 'A', slug: uniqueSlug() } }), 201);
    const scoped = await createApiKey(t.orgId, { workspaceIds: [ws.data.id] });
    const { data } = await expectJson<{ data: { token: string } }>(await apiFetch('/api/v1/auth/token', { method: 'POST', body: { api_key: scoped.key } }), 200);
    const list = await expectJson<{ data: { id: string }[] }>(await tenantFetch(data.token, '/api/v1/workspaces'), 200);
    expect(list.data.map((w) => w.id)).toEqual([ws.data.id]);
    await expectJson(await operatorFetch(`/api/v1/admin/organizations/${t.orgId}/api-keys/${scoped.id}`, { method: 'DELETE' }), 200);
    await expectError(await tenantFetch(data.token, '/api/v1/workspaces'), 401, 'UNAUTHORIZED');
  });
});

describe('scope and tenancy', () => {
  it('a key scoped to workspace A gets 403 naming workspace B in a create, and 201 in A', async () => {
    const t = await createTenant();
    const a = await expectJson<{ data: { id: string } }>(await tenantFetch(t.apiKey, '/api/v1/workspaces', { method: 'POST', body: { name: 'A', slug: uniqueSlug('a') } }), 201);
    const b = await expectJson<{ data: { id: string } }>(await tenantFetch(t.apiKey, '/api/v1/workspaces', { method: 'POST', body: { name: 'B', slug: uniqueSlug('b') } }), 201);
    const scoped = await createApiKey(t.orgId, { workspaceIds: [a.data.id] });
    await expectError(await tenantFetch(scoped.key, '/api/v1/projects', { method: 'POST', body: { name: 'p', workspace_id: b.data.id } }), 403, 'FORBIDDEN');
    await expectError(await tenantFetch(scoped.key, '/api/v1/projects', { method: 'POST', body: { name: 'p', workspace_slug: uniqueSlug('new') } }), 403, 'FORBIDDEN');
    await expectError(await tenantFetch(scoped.key, '/api/v1/workspaces', { method: 'POST', body: { name: 'C' } }), 403, 'FORBIDDEN');
    const p = await expectJson<{ data: { workspace_id: string } }>(await tenantFetch(scoped.key, '/api/v1/projects', { method: 'POST', body: { name: 'p' } }), 201);
    expect(p.data.workspace_id).toBe(a.data.id);
  });

  it("another tenant's workspace and project are 404, not 403", async () => {
    const t1 = await createTenant();
    const t2 = await createTenant();
    await expectError(await tenantFetch(t2.apiKey, `/api/v1/workspaces/${t1.workspaceId}`), 404, 'NOT_FOUND');
    await expectError(await tenantFetch(t2.apiKey, `/api/v1/projects/${t1.projectId}`), 404, 'NOT_FOUND');
    await expectError(await tenantFetch(t2.apiKey, '/api/v1/projects', { method: 'POST', body: { name: 'x', workspace_id: t1.workspaceId } }), 404, 'NOT_FOUND');
    await expectJson(await tenantFetch(t1.apiKey, `/api/v1/projects/${t1.projectId}`), 200);
  });
});

describe('operator token', () => {
  it('the admin API refuses a missing or wrong operator token and a tenant key', async () => {
    const t = await createTenant();
    await expectError(await apiFetch('/api/v1/admin/organizations'), 401, 'UNAUTHORIZED');
    await expectError(await apiFetch('/api/v1/admin/organizations', { headers: { authorization: 'Bearer op_test_tokem' } }), 401, 'UNAUTHORIZED');
    await expectError(await apiFetch('/api/v1/admin/organizations', { headers: { authorization: 'Bearer op_test_token_and_more' } }), 401, 'UNAUTHORIZED');
    await expectError(await tenantFetch(t.apiKey, '/api/v1/admin/organizations'), 401, 'UNAUTHORIZED');
    await expectJson(await operatorFetch('/api/v1/admin/organizations'), 200);
  });
});
