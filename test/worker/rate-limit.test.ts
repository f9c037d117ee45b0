import { env, SELF } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { clientAddress } from '../../worker/middleware/rate-limit.ts';
import { apiFetch, createApiKey, createTenant, createWorkspace, expectError, expectJson, operatorFetch, tenantFetch, uniqueIp, uniqueSlug } from './helpers.ts';

/**
 * Spends `n` admissions of a scope's window directly at its limiter object, as
 * that many earlier requests would have. The tests then send only the few
 * requests around the limit through the Worker: what they check is where the
 * limit falls and how the request past it is answered, and a few round trips
 * take the same time on any machine, where sixty in a row do not.
 */
async function spend(scope: string, perMinute: number, n: number): Promise<void> {
  const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(scope));
  const d = await stub.take(perMinute, n);
  expect(d.granted).toBe(n);
}

/** Sends `n` requests one after another and returns their statuses. */
async function statuses(n: number, send: () => Promise<Response>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await send();
    await res.arrayBuffer();
    out.push(res.status);
  }
  return out;
}

async function expectRateLimited(res: Response): Promise<void> {
  const body = await expectError(res, 429, 'RATE_LIMITED');
  expect(body.error.request_id).toMatch(/^req_/);
  const retry = Number(res.headers.get('retry-after'));
  expect(Number.isInteger(retry)).toBe(true);
  expect(retry).toBeGreaterThanOrEqual(1);
  expect(retry).toBeLessThanOrEqual(60);
}

describe('general API limit (per workspace)', () => {
  it("after the org's rate_limit_per_minute requests, the next is 429 with Retry-After", async () => {
    const t = await createTenant({ rateLimitPerMinute: 5 });
    expect(await statuses(5, () => tenantFetch(t.apiKey, '/api/v1/workspaces'))).toEqual([200, 200, 200, 200, 200]);
    const res = await tenantFetch(t.apiKey, '/api/v1/workspaces');
    expect(res.headers.get('x-ratelimit-limit')).toBe('5');
    await expectRateLimited(res);
  });

  it('counts per workspace: another tenant, and a key scoped to another workspace, have their own budget', async () => {
    const t = await createTenant({ rateLimitPerMinute: 3 });
    const wsB = await createWorkspace(t.apiKey, uniqueSlug('b'));
    const keyB = await createApiKey(t.orgId, { workspaceIds: [wsB] });
    const other = await createTenant({ rateLimitPerMinute: 3 });
    // createWorkspace used one of t's three.
    expect(await statuses(3, () => tenantFetch(t.apiKey, '/api/v1/workspaces'))).toEqual([200, 200, 429]);
    expect(await statuses(3, () => tenantFetch(keyB.key, '/api/v1/workspaces'))).toEqual([200, 200, 200]);
    expect(await statuses(1, () => tenantFetch(other.apiKey, '/api/v1/workspaces'))).toEqual([200]);
  });

  it('a busy burst, admitted in batches, still gets exactly the limit and no more', async () => {
    const t = await createTenant({ rateLimitPerMinute: 40 });
    // Sequential and then concurrent: the isolate batches admissions (here two at a time) once it sees traffic.
    const first = await statuses(24, () => tenantFetch(t.apiKey, '/api/v1/workspaces'));
    const rest = await Promise.all(
      Array.from({ length: 24 }, async () => {
        const res = await tenantFetch(t.apiKey, '/api/v1/workspaces');
        await res.arrayBuffer();
        return res.status;
      }),
    );
    const all = [...first, ...rest];
    expect(all.filter((s) => s === 200)).toHaveLength(40);
    expect(all.filter((s) => s === 429)).toHaveLength(8);
    expect(first.every((s) => s === 200)).toBe(true);
  });

  it('raising the limit through the admin API takes effect on the next request', async () => {
    const t = await createTenant({ rateLimitPerMinute: 2 });
    expect(await statuses(3, () => tenantFetch(t.apiKey, '/api/v1/workspaces'))).toEqual([200, 200, 429]);
    await expectJson(await operatorFetch(`/api/v1/admin/organizations/${t.orgId}`, { method: 'PATCH', body: { rate_limit_per_minute: 4 } }), 200);
    expect(await statuses(3, () => tenantFetch(t.apiKey, '/api/v1/workspaces'))).toEqual([200, 200, 429]);
  });
});

describe('auth endpoint limit (20/min per address)', () => {
  it('the 21st POST /auth/token from one address is 429; another address is unaffected', async () => {
    const t = await createTenant();
    const ip = uniqueIp();
    const mint = (from: string) => apiFetch('/api/v1/auth/token', { method: 'POST', body: { api_key: t.apiKey }, headers: { 'cf-connecting-ip': from } });
    expect(await statuses(2, () => mint(ip))).toEqual([200, 200]);
    await spend(`auth:${ip}`, 20, 17);
    expect(await statuses(1, () => mint(ip))).toEqual([200]);
    await expectRateLimited(await mint(ip));
    expect((await mint(uniqueIp())).status).toBe(200);
  });
});

describe('unauthenticated limit (60/min per address)', () => {
  it('the 61st public request from one address is 429; another address is unaffected', async () => {
    const ip = uniqueIp();
    const health = (from: string) => apiFetch('/api/v1/health', { headers: { 'cf-connecting-ip': from } });
    expect(await statuses(2, () => health(ip))).toEqual([200, 200]);
    await spend(`ip:${ip}`, 60, 57);
    expect(await statuses(1, () => health(ip))).toEqual([200]);
    await expectRateLimited(await health(ip));
    expect((await health(uniqueIp())).status).toBe(200);
  });

  it('requests with bad credentials count against the address: the 61st is 429 instead of 401', async () => {
    const ip = uniqueIp();
    const bad = () => apiFetch('/api/v1/workspaces', { headers: { 'cf-connecting-ip': ip, authorization: 'Bearer msk_live_' + 'x'.repeat(43) } });
    // Only the bad requests themselves count: two of them, 57 spent, and the 60th is the last 401.
    expect(await statuses(2, bad)).toEqual([401, 401]);
    await spend(`ip:${ip}`, 60, 57);
    expect(await statuses(1, bad)).toEqual([401]);
    await expectRateLimited(await bad());
  });

  it('the address is CF-Connecting-IP, else the first X-Forwarded-For entry, else "local"', () => {
    const req = (h: Record<string, string>) => new Request('https://api.test/', { headers: h });
    expect(clientAddress(req({ 'cf-connecting-ip': '1.2.3.4', 'x-forwarded-for': '5.6.7.8' }))).toBe('1.2.3.4');
    expect(clientAddress(req({ 'x-forwarded-for': '5.6.7.8, 9.9.9.9' }))).toBe('5.6.7.8');
    expect(clientAddress(req({}))).toBe('local');
  });

  it('X-Forwarded-For addresses are limited separately when CF-Connecting-IP is absent', async () => {
    const a = uniqueIp();
    const viaProxy = (ip: string) => SELF.fetch('https://api.test/api/v1/health', { headers: { 'x-forwarded-for': `${ip}, 10.0.0.1` } });
    expect(await statuses(1, () => viaProxy(a))).toEqual([200]);
    await spend(`ip:${a}`, 60, 58);
    expect(await statuses(1, () => viaProxy(a))).toEqual([200]);
    expect((await viaProxy(a)).status).toBe(429);
    expect((await viaProxy(uniqueIp())).status).toBe(200);
  });
});

describe('RateLimiterObject', () => {
  afterEach(() => vi.useRealTimers());

  it('is a sliding window: a slot frees exactly 60 s after the request that used it', async () => {
    vi.useFakeTimers();
    const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);
    vi.setSystemTime(t0);
    const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(`test:${crypto.randomUUID()}`));
    expect((await stub.hit(2)).allowed).toBe(true);
    vi.setSystemTime(t0 + 30_000);
    expect((await stub.hit(2)).remaining).toBe(0);
    const denied = await stub.hit(2);
    expect(denied).toMatchObject({ allowed: false, retry_after_s: 30 });
    // 60 s after the first request its slot frees, but not the second one's.
    vi.setSystemTime(t0 + 60_001);
    expect((await stub.hit(2)).allowed).toBe(true);
    expect((await stub.hit(2)).allowed).toBe(false);
    vi.setSystemTime(t0 + 90_001);
    expect((await stub.hit(2)).allowed).toBe(true);
  });
});
