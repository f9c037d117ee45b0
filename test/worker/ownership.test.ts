import { env } from 'cloudflare:test';
import { drizzle } from 'drizzle-orm/d1';
import { describe, expect, it } from 'vitest';
import { computers } from '../../schema/db.ts';
import type { Principal } from '../../worker/middleware/principal.ts';
import { ownershipFilters, resolveOwnership } from '../../worker/tenancy/ownership.ts';
import { createTenant, createWorkspace, expectError, expectJson, tenantFetch, uniqueSlug, type Tenant } from './helpers.ts';

const principal = (t: Pick<Tenant, 'orgId'>, scope: Partial<Pick<Principal, 'workspace_ids' | 'project_ids'>> = {}): Principal => ({
  kind: 'api_key',
  org_id: t.orgId,
  subject: 'test',
  credential_id: null,
  workspace_ids: scope.workspace_ids ?? null,
  project_ids: scope.project_ids ?? null,
  mode: 'live',
  rate_scope: t.orgId,
  rate_limit: null,
});

const rowCount = async (table: 'workspaces' | 'projects', orgId: string, slug: string) =>
  (await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE org_id = ? AND slug = ?`).bind(orgId, slug).first<{ n: number }>())!.n;

async function rejection(p: Promise<unknown>): Promise<{ status: number; code: string }> {
  const err = await p.then(
    () => null,
    (e: unknown) => e as { status: number; code: string },
  );
  if (!err) throw new Error('expected a rejection');
  return { status: err.status, code: err.code };
}

describe('resolveOwnership', () => {
  it("without selectors it is the org's default workspace and project", async () => {
    const t = await createTenant();
    expect(await resolveOwnership(env, principal(t), {})).toEqual({ workspace_id: t.workspaceId, project_id: t.projectId });
  });

  it('auto-creates a workspace and project by slug with the given display names, and reuses them after', async () => {
    const t = await createTenant();
    const ws = uniqueSlug('clinic');
    const sel = { workspace_slug: ws, workspace_name: 'Dr Smith Clinic', project_slug: 'lead-magnet', project_name: 'Lead magnet' };
    const first = await resolveOwnership(env, principal(t), sel);
    const again = await resolveOwnership(env, principal(t), { workspace_slug: ws, project_slug: 'lead-magnet' });
    expect(again).toEqual(first);
    const w = await env.DB.prepare('SELECT name, is_default FROM workspaces WHERE id = ?').bind(first.workspace_id).first();
    expect(w).toEqual({ name: 'Dr Smith Clinic', is_default: 0 });
    const p = await env.DB.prepare('SELECT name, workspace_id FROM projects WHERE id = ?').bind(first.project_id).first();
    expect(p).toEqual({ name: 'Lead magnet', workspace_id: first.workspace_id });
    // Without a project selector the new workspace gets its own default project.
    const dflt = await resolveOwnership(env, principal(t), { workspace_slug: ws });
    expect(dflt.workspace_id).toBe(first.workspace_id);
    expect(dflt.project_id).not.toBe(first.project_id);
  });

  it('concurrent auto-creates of one slug all succeed with the same row', async () => {
    const t = await createTenant();
    const ws = uniqueSlug('race');
    const results = await Promise.all(Array.from({ length: 6 }, () => resolveOwnership(env, principal(t), { workspace_slug: ws, project_slug: 'p1' })));
    expect(new Set(results.map((r) => `${r.workspace_id}/${r.project_id}`)).size).toBe(1);
    expect(await rowCount('workspaces', t.orgId, ws)).toBe(1);
    expect(await rowCount('projects', t.orgId, 'p1')).toBe(1);
  });

  it("another org's workspace_id or project_id is 404; an unknown one too", async () => {
    const t1 = await createTenant();
    const t2 = await createTenant();
    expect(await rejection(resolveOwnership(env, principal(t2), { workspace_id: t1.workspaceId }))).toEqual({ status: 404, code: 'NOT_FOUND' });
    expect(await rejection(resolveOwnership(env, principal(t2), { project_id: t1.projectId }))).toEqual({ status: 404, code: 'NOT_FOUND' });
    expect(await rejection(resolveOwnership(env, principal(t2), { workspace_id: crypto.randomUUID() }))).toEqual({ status: 404, code: 'NOT_FOUND' });
  });

  it('a project_id alone decides the workspace; with a workspace it is not in, 400', async () => {
    const t = await createTenant();
    const made = await resolveOwnership(env, principal(t), { workspace_slug: uniqueSlug(), project_slug: 'app' });
    expect(await resolveOwnership(env, principal(t), { project_id: made.project_id })).toEqual(made);
    expect(await rejection(resolveOwnership(env, principal(t), { project_id: made.project_id, workspace_id: t.workspaceId }))).toEqual({ status: 400, code: 'VALIDATION_FAILED' });
  });

  it('creates the default workspace and project on first need', async () => {
    const orgId = crypto.randomUUID();
    await env.DB.prepare(`INSERT INTO organizations (id, name, slug, credits, created_at, updated_at) VALUES (?, 'bare', ?, 0, 'x', 'x')`).bind(orgId, uniqueSlug('bare')).run();
    const got = await resolveOwnership(env, principal({ orgId }), {});
    const again = await resolveOwnership(env, principal({ orgId }), {});
    expect(again).toEqual(got);
    const w = await env.DB.prepare('SELECT is_default, slug FROM workspaces WHERE id = ?').bind(got.workspace_id).first();
    expect(w).toEqual({ is_default: 1, slug: 'default' });
  });

  it("enforces the credential's scope: 403 outside it, and no auto-create for a scoped key", async () => {
    const t = await createTenant();
    const a = await resolveOwnership(env, principal(t), { workspace_slug: uniqueSlug('a'), project_slug: 'pa' });
    const scoped = principal(t, { workspace_ids: [a.workspace_id] });
    // No selector: the credential's only workspace, not the org default.
    expect((await resolveOwnership(env, scoped, {})).workspace_id).toBe(a.workspace_id);
    expect(await rejection(resolveOwnership(env, scoped, { workspace_id: t.workspaceId }))).toEqual({ status: 403, code: 'FORBIDDEN' });
    const fresh = uniqueSlug('new');
    expect(await rejection(resolveOwnership(env, scoped, { workspace_slug: fresh }))).toEqual({ status: 403, code: 'FORBIDDEN' });
    expect(await rowCount('workspaces', t.orgId, fresh)).toBe(0);

    const projectScoped = principal(t, { project_ids: [a.project_id] });
    expect(await resolveOwnership(env, projectScoped, {})).toEqual(a);
    expect(await rejection(resolveOwnership(env, projectScoped, { project_slug: 'other' }))).toEqual({ status: 403, code: 'FORBIDDEN' });
    expect(await rejection(resolveOwnership(env, projectScoped, { project_id: t.projectId }))).toEqual({ status: 403, code: 'FORBIDDEN' });
  });
});

describe('ownership over HTTP (POST/GET /projects)', () => {
  it('workspace_slug in a create auto-creates the workspace named workspace_name, once', async () => {
    const t = await createTenant();
    const ws = uniqueSlug('dr-smith');
    const body = (slug: string) => ({ name: slug, slug, workspace_slug: ws, workspace_name: 'Dr Smith' });
    const p1 = await expectJson<{ data: { workspace_id: string } }>(await tenantFetch(t.apiKey, '/api/v1/projects', { method: 'POST', body: body('one') }), 201);
    const p2 = await expectJson<{ data: { workspace_id: string } }>(await tenantFetch(t.apiKey, '/api/v1/projects', { method: 'POST', body: body('two') }), 201);
    expect(p2.data.workspace_id).toBe(p1.data.workspace_id);
    expect(await rowCount('workspaces', t.orgId, ws)).toBe(1);
    const list = await expectJson<{ data: { slug: string }[]; page: { total: number } }>(await tenantFetch(t.apiKey, `/api/v1/projects?workspace_slug=${ws}`), 200);
    // Default projects are made on first need, so the new workspace holds just these two.
    expect(list.data.map((p) => p.slug).sort()).toEqual(['one', 'two']);
    expect(list.page.total).toBe(2);
  });

  it('list filters: workspace_id, project_slug; bad ids are 400; external_* is refused where the list has no such column', async () => {
    const t = await createTenant();
    const ws = await createWorkspace(t.apiKey, uniqueSlug());
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/projects', { method: 'POST', body: { name: 'x', slug: 'shared', workspace_id: ws } }), 201);
    await expectJson(await tenantFetch(t.apiKey, '/api/v1/projects', { method: 'POST', body: { name: 'x', slug: 'shared' } }), 201);
    const byWs = await expectJson<{ data: { workspace_id: string }[] }>(await tenantFetch(t.apiKey, `/api/v1/projects?workspace_id=${ws}`), 200);
    expect(byWs.data.map((p) => p.workspace_id)).toEqual([ws]);
    const bySlug = await expectJson<{ data: { slug: string }[] }>(await tenantFetch(t.apiKey, '/api/v1/projects?project_slug=shared'), 200);
    expect(bySlug.data).toHaveLength(2);
    await expectError(await tenantFetch(t.apiKey, '/api/v1/projects?workspace_id=nope'), 400, 'VALIDATION_FAILED');
    await expectError(await tenantFetch(t.apiKey, '/api/v1/projects?external_user_id=u1'), 400, 'VALIDATION_FAILED');
  });
});

describe('ownershipFilters', () => {
  async function insertComputer(t: Tenant, o: { workspace_id: string; project_id: string; ext_ws?: string; ext_user?: string; ext_proj?: string }): Promise<string> {
    const id = crypto.randomUUID();
    await env.DB.prepare(
      `INSERT INTO computers (id, org_id, workspace_id, project_id, name, slug, template_type, size, vcpus, memory_mb, status, region,
         external_workspace_id, external_user_id, external_project_id, created_at, updated_at)
       VALUES (?, ?, ?, ?, 'c', ?, 'miosa-desktop', 'small', 1, 1024, 'stopped', 'local', ?, ?, ?, 'x', 'x')`,
    )
      .bind(id, t.orgId, o.workspace_id, o.project_id, `c-${id.slice(0, 8)}`, o.ext_ws ?? null, o.ext_user ?? null, o.ext_proj ?? null)
      .run();
    return id;
  }

  async function fixture() {
    const t = await createTenant();
    const a = await resolveOwnership(env, principal(t), { workspace_slug: 'clinic-a', project_slug: 'site' });
    const b = await resolveOwnership(env, principal(t), { workspace_slug: 'clinic-b', project_slug: 'site' });
    const ids = {
      a1: await insertComputer(t, { ...a, ext_ws: 'cust-1', ext_user: 'u-1', ext_proj: 'doc-1' }),
      a2: await insertComputer(t, { ...a, ext_ws: 'cust-1', ext_user: 'u-2' }),
      b1: await insertComputer(t, { ...b, ext_user: 'u-1' }),
      dflt: await insertComputer(t, { workspace_id: t.workspaceId, project_id: t.projectId }),
    };
    // Another tenant's computer in a same-named workspace must never show up.
    const other = await createTenant();
    const oa = await resolveOwnership(env, principal(other), { workspace_slug: 'clinic-a', project_slug: 'site' });
    await insertComputer(other, { ...oa, ext_user: 'u-1' });
    return { t, a, b, ids };
  }

  async function run(p: Principal, query: string): Promise<string[]> {
    const f = ownershipFilters(env, p, new URLSearchParams(query));
    const { results } = await env.DB.prepare(`SELECT id FROM computers WHERE ${f.sql}`).bind(...f.args).all<{ id: string }>();
    const viaDrizzle = await drizzle(env.DB).select({ id: computers.id }).from(computers).where(f.drizzle);
    const ids = results.map((r) => r.id).sort();
    expect(viaDrizzle.map((r) => r.id).sort()).toEqual(ids);
    return ids;
  }

  it('filters by workspace/project id or slug and by external ids, inside the caller org only', async () => {
    const { t, a, b, ids } = await fixture();
    const p = principal(t);
    const sorted = (...xs: string[]) => xs.sort();
    expect(await run(p, '')).toEqual(sorted(ids.a1, ids.a2, ids.b1, ids.dflt));
    expect(await run(p, 'workspace_slug=clinic-a')).toEqual(sorted(ids.a1, ids.a2));
    expect(await run(p, `workspace_id=${b.workspace_id}`)).toEqual([ids.b1]);
    expect(await run(p, 'project_slug=site')).toEqual(sorted(ids.a1, ids.a2, ids.b1));
    expect(await run(p, `project_id=${a.project_id}&external_user_id=u-2`)).toEqual([ids.a2]);
    expect(await run(p, 'external_user_id=u-1')).toEqual(sorted(ids.a1, ids.b1));
    expect(await run(p, 'external_workspace_id=cust-1&external_project_id=doc-1')).toEqual([ids.a1]);
    expect(await run(p, 'workspace_slug=nope')).toEqual([]);
  });

  it("is restricted to the credential's scope; naming an id outside it is 403", async () => {
    const { t, a, b, ids } = await fixture();
    const scoped = principal(t, { workspace_ids: [a.workspace_id] });
    expect(await run(scoped, '')).toEqual([ids.a1, ids.a2].sort());
    expect(await run(scoped, 'workspace_slug=clinic-b')).toEqual([]);
    expect(() => ownershipFilters(env, scoped, new URLSearchParams(`workspace_id=${b.workspace_id}`))).toThrow(expect.objectContaining({ status: 403 }));
    const projectScoped = principal(t, { project_ids: [b.project_id] });
    expect(await run(projectScoped, '')).toEqual([ids.b1]);
    expect(() => ownershipFilters(env, projectScoped, new URLSearchParams(`project_id=${a.project_id}`))).toThrow(expect.objectContaining({ status: 403 }));
  });
});
