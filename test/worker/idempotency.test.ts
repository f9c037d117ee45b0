import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../schema/errors.ts';
import { withIdempotency } from '../../worker/middleware/idempotency.ts';
import { createTenant, expectError, expectJson, tenantFetch, uniqueSlug } from './helpers.ts';

const sha256Hex = async (s: string) =>
  [...new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s)))].map((x) => x.toString(16).padStart(2, '0')).join('');

const countWorkspaces = async (orgId: string, slug: string) =>
  (await env.DB.prepare('SELECT COUNT(*) AS n FROM workspaces WHERE org_id = ? AND slug = ?').bind(orgId, slug).first<{ n: number }>())!.n;

const createWs = (apiKey: string, key: string, body: unknown) =>
  tenantFetch(apiKey, '/api/v1/workspaces', { method: 'POST', body, headers: { 'idempotency-key': key } });

describe('Idempotency-Key', () => {
  it('a repeat within 24 h replays the first status and body without creating again', async () => {
    const t = await createTenant();
    const key = crypto.randomUUID();
    const body = { name: 'Clinic', slug: uniqueSlug() };
    const first = await createWs(t.apiKey, key, body);
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const firstText = await first.text();

    const again = await createWs(t.apiKey, key, body);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('content-type')).toContain('application/json');
    expect(await again.text()).toBe(firstText);
    expect(await countWorkspaces(t.orgId, body.slug)).toBe(1);
  });

  it('without the header the same request runs again (here: a 409 for the taken slug)', async () => {
    const t = await createTenant();
    const body = { name: 'Clinic', slug: uniqueSlug() };
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/workspaces', { method: 'POST', body }), 201);
    await expectError(await tenantFetch(t.apiKey, '/api/v1/workspaces', { method: 'POST', body }), 409, 'CONFLICT');
  });

  it('the same key with a different body, path or method is 422 IDEMPOTENCY_KEY_REUSED and changes nothing', async () => {
    const t = await createTenant();
    const key = crypto.randomUUID();
    const slug = uniqueSlug();
    await expectJson(await createWs(t.apiKey, key, { name: 'A', slug }), 201);
    const other = uniqueSlug();
    await expectError(await createWs(t.apiKey, key, { name: 'A', slug: other }), 422, 'IDEMPOTENCY_KEY_REUSED');
    await expectError(await tenantFetch(t.apiKey, '/api/v1/projects', { method: 'POST', body: { name: 'A', slug }, headers: { 'idempotency-key': key } }), 422, 'IDEMPOTENCY_KEY_REUSED');
    expect(await countWorkspaces(t.orgId, other)).toBe(0);
  });

  it('keys are per organization: another tenant may use the same key', async () => {
    const t1 = await createTenant();
    const t2 = await createTenant();
    const key = crypto.randomUUID();
    const body = { name: 'Same', slug: uniqueSlug() };
    await expectJson(await createWs(t1.apiKey, key, body), 201);
    const res = await createWs(t2.apiKey, key, body);
    expect(res.status).toBe(201);
    expect(res.headers.get('idempotent-replayed')).toBeNull();
    expect(await countWorkspaces(t2.orgId, body.slug)).toBe(1);
  });

  it('a retry while the first request is still running is 409 IDEMPOTENCY_KEY_IN_USE', async () => {
    const t = await createTenant();
    const key = crypto.randomUUID();
    const body = { name: 'Busy', slug: uniqueSlug() };
    const now = Date.now();
    // The state a concurrent first request leaves while its handler runs.
    await env.DB.prepare(`INSERT INTO idempotency_keys (org_id, key, fingerprint, state, created_at, expires_at) VALUES (?, ?, ?, 'running', ?, ?)`)
      .bind(t.orgId, key, await sha256Hex(`POST /api/v1/workspaces\n${JSON.stringify(body)}`), new Date(now).toISOString(), new Date(now + 86_400_000).toISOString())
      .run();
    await expectError(await createWs(t.apiKey, key, body), 409, 'IDEMPOTENCY_KEY_IN_USE');
    expect(await countWorkspaces(t.orgId, body.slug)).toBe(0);
  });

  it('an expired record (older than 24 h) is treated as absent: the request runs again', async () => {
    const t = await createTenant();
    const key = crypto.randomUUID();
    const body = { name: 'Old', slug: uniqueSlug() };
    const past = Date.now() - 25 * 3600_000;
    await env.DB.prepare(`INSERT INTO idempotency_keys (org_id, key, fingerprint, state, status, body, content_type, created_at, expires_at) VALUES (?, ?, 'stale', 'done', 201, '{"data":"stale"}', 'application/json', ?, ?)`)
      .bind(t.orgId, key, new Date(past).toISOString(), new Date(past + 86_400_000).toISOString())
      .run();
    const res = await createWs(t.apiKey, key, body);
    const json = await expectJson<{ data: { slug: string } }>(res, 201);
    expect(json.data.slug).toBe(body.slug);
    expect(res.headers.get('idempotent-replayed')).toBeNull();
    expect(await countWorkspaces(t.orgId, body.slug)).toBe(1);
  });

  it('4xx outcomes are stored and replayed with the same status and error', async () => {
    const t = await createTenant();
    const slug = uniqueSlug();
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/workspaces', { method: 'POST', body: { name: 'x', slug } }), 201);
    const key = crypto.randomUUID();
    const first = await expectError(await createWs(t.apiKey, key, { name: 'x', slug }), 409, 'CONFLICT');
    // Delete the conflicting row: a re-run would now succeed, a replay still says 409.
    await env.DB.prepare('DELETE FROM workspaces WHERE org_id = ? AND slug = ?').bind(t.orgId, slug).run();
    const res = await createWs(t.apiKey, key, { name: 'x', slug });
    expect(res.headers.get('idempotent-replayed')).toBe('true');
    const replayed = await expectError(res, 409, 'CONFLICT');
    expect(replayed.error.message).toBe(first.error.message);
    expect(await countWorkspaces(t.orgId, slug)).toBe(0);
  });

  it('a key that is empty, longer than 255 or has control characters is a 400', async () => {
    const t = await createTenant();
    for (const key of ['x'.repeat(256), 'bad\tkey']) {
      await expectError(await createWs(t.apiKey, key, { name: 'x', slug: uniqueSlug() }), 400, 'BAD_REQUEST');
    }
    await expectError(await createWs(t.apiKey, '', { name: 'x', slug: uniqueSlug() }), 400, 'BAD_REQUEST');
    const ok = await createWs(t.apiKey, 'k'.repeat(255), { name: 'x', slug: uniqueSlug() });
    expect(ok.status).toBe(201);
  });
});

describe('withIdempotency and server errors', () => {
  const orgId = () => `org-${crypto.randomUUID()}`;

  it('a returned 5xx releases the key, so the retry runs and its outcome is kept', async () => {
    const org = orgId();
    let runs = 0;
    const flaky = async () => (++runs === 1 ? new Response('upstream down', { status: 502 }) : Response.json({ ok: runs }, { status: 201 }));
    expect((await withIdempotency(env, org, 'k1', 'POST /x\n{}', flaky)).status).toBe(502);
    const second = await withIdempotency(env, org, 'k1', 'POST /x\n{}', flaky);
    expect(second.status).toBe(201);
    expect(await second.json()).toEqual({ ok: 2 });
    const third = await withIdempotency(env, org, 'k1', 'POST /x\n{}', flaky);
    expect(third.headers.get('idempotent-replayed')).toBe('true');
    expect(await third.json()).toEqual({ ok: 2 });
    expect(runs).toBe(2);
  });

  it('a thrown error that renders as 5xx releases the key too', async () => {
    const org = orgId();
    let runs = 0;
    const boom = async (): Promise<Response> => {
      runs++;
      if (runs === 1) throw new Error('database exploded');
      if (runs === 2) throw new ApiError('AGENT_UNAVAILABLE', 'agent offline');
      return new Response(null, { status: 204 });
    };
    await expect(withIdempotency(env, org, 'k2', 'DELETE /y\n', boom)).rejects.toThrow('database exploded');
    await expect(withIdempotency(env, org, 'k2', 'DELETE /y\n', boom)).rejects.toThrow('agent offline');
    expect((await withIdempotency(env, org, 'k2', 'DELETE /y\n', boom)).status).toBe(204);
    const replay = await withIdempotency(env, org, 'k2', 'DELETE /y\n', boom);
    expect(replay.status).toBe(204);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(runs).toBe(3);
  });

  it('a streaming response passes through unstored and a retry is refused rather than run twice', async () => {
    const org = orgId();
    let runs = 0;
    const sse = async () => {
      runs++;
      return new Response('id: 1\ndata: hi\n\n', { headers: { 'content-type': 'text/event-stream' } });
    };
    const first = await withIdempotency(env, org, 'k3', 'POST /s\n{}', sse);
    expect(await first.text()).toBe('id: 1\ndata: hi\n\n');
    const row = await env.DB.prepare('SELECT state, body FROM idempotency_keys WHERE org_id = ? AND key = ?').bind(org, 'k3').first();
    expect(row).toEqual({ state: 'done', body: null });
    await expect(withIdempotency(env, org, 'k3', 'POST /s\n{}', sse)).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(runs).toBe(1);
  });

  it('concurrent first requests with one key run the handler once', async () => {
    const org = orgId();
    let runs = 0;
    const slow = async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 50));
      return Response.json({ created: true }, { status: 201 });
    };
    const results = await Promise.allSettled([1, 2, 3].map(() => withIdempotency(env, org, 'k4', 'POST /c\n{}', slow)));
    expect(runs).toBe(1);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'IDEMPOTENCY_KEY_IN_USE' });
  });
});
