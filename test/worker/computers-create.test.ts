import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { connectHost, registerHost, useAgentPeers } from './agent-peer.ts';
import { createComputer, world, type ComputerView } from './computer-fixtures.ts';

useAgentPeers();

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const body = (region: string, extra: Record<string, unknown> = {}) => ({ name: 'my-computer', template_type: 'miosa-desktop', region, ...extra });

describe('POST /computers', () => {
  it('answers 201 with every field of the spec computer object, provisioning, sized small by default', async () => {
    const w = await world();
    const c = await expectJson<ComputerView>(await w.api('', { method: 'POST', body: body(w.host.region) }), 201);
    expect(c.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(c).toMatchObject({
      tenant_id: w.tenant.orgId,
      owner_user_id: w.tenant.keyId,
      name: 'my-computer',
      template_type: 'miosa-desktop',
      size: 'small',
      vcpus: 1,
      memory_mb: 4096,
      status: 'provisioning',
      vm_id: null,
      workspace_id: w.tenant.workspaceId,
      project_id: w.tenant.projectId,
      external_workspace_id: null,
      external_user_id: null,
      external_project_id: null,
      selected_apps: [],
      settings: {},
      ai_config: {},
      agent_session_id: null,
      agent_status: null,
      resolution: '1280x720',
      auto_stop: 0,
    });
    // The slug names the computer's hosts, so it is unique: the name's slug and the start of the id.
    expect(c.slug).toBe(`my-computer-${c.id.slice(0, 8)}`);
    expect(c.sandbox_url).toMatch(/^https:\/\/my-computer-[0-9a-f]{8}\.sandbox\./);
    expect(c.desktop_url).toMatch(/^https:\/\/my-computer-[0-9a-f]{8}\..+\/desktop\/index\.html$/);
    expect(c.created_at).toMatch(ISO);
    expect(c.updated_at).toMatch(ISO);
    const specFields = ['id', 'tenant_id', 'owner_user_id', 'name', 'slug', 'template_type', 'size', 'vcpus', 'memory_mb', 'status', 'vm_id',
      'workspace_id', 'project_id', 'external_workspace_id', 'external_user_id', 'external_project_id', 'sandbox_url', 'desktop_url',
      'selected_apps', 'settings', 'ai_config', 'agent_session_id', 'agent_status', 'resolution', 'auto_stop', 'created_at', 'updated_at'];
    for (const f of specFields) expect(c, `field ${f}`).toHaveProperty(f);
    // GET answers the same object.
    expect(await expectJson<ComputerView>(await w.api(`/${c.id}`), 200)).toMatchObject({ ...c, updated_at: expect.stringMatching(ISO) });
  });

  it('takes vcpus and memory_mb from the size', async () => {
    const w = await world();
    expect(await createComputer(w, { size: 'medium' })).toMatchObject({ size: 'medium', vcpus: 2, memory_mb: 8192 });
    expect(await createComputer(w, { size: 'large' })).toMatchObject({ size: 'large', vcpus: 4, memory_mb: 16384 });
  });

  it('tells the host agent to attach the new computer', async () => {
    const w = await world();
    const c = await createComputer(w);
    expect(await w.host.take('computer.attach')).toEqual({ type: 'computer.attach', computer_id: c.id });
  });

  it('a host that was offline at create time is welcomed with the computer when it connects', async () => {
    const w = await world();
    const c = await createComputer(w);
    w.host.close();
    const again = await connectHost(w.host);
    expect(again.welcome.computers).toEqual([c.id]);
    expect(again.welcome).toMatchObject({ type: 'welcome', host_id: w.host.id, protocol: { major: 1 } });
  });

  it('is a 400 "name is required" without a name', async () => {
    const w = await world();
    const err = await expectError(await w.api('', { method: 'POST', body: { template_type: 'miosa-desktop', region: w.host.region } }), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toBe('name is required');
  });

  it('is a 400 naming template_type for an unknown or missing template', async () => {
    const w = await world();
    const unknown = await expectError(await w.api('', { method: 'POST', body: body(w.host.region, { template_type: 'windows-xp' }) }), 400, 'VALIDATION_FAILED');
    expect(unknown.error.message).toMatch(/^template_type: /);
    expect(unknown.error.message).toContain('miosa-desktop');
    const missing = await expectError(await w.api('', { method: 'POST', body: { name: 'x', region: w.host.region } }), 400, 'VALIDATION_FAILED');
    expect(missing.error.message).toMatch(/template_type/);
  });

  it('is a 400 naming size for an unknown size', async () => {
    const w = await world();
    const err = await expectError(await w.api('', { method: 'POST', body: body(w.host.region, { size: 'huge' }) }), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toMatch(/^size: /);
  });

  it('is a 402 INSUFFICIENT_CREDITS for an organization without credits, and creates nothing', async () => {
    const w = await world({ credits: 0 });
    await expectError(await w.api('', { method: 'POST', body: body(w.host.region) }), 402, 'INSUFFICIENT_CREDITS');
    const list = await expectJson<{ total: number }>(await w.api(''), 200);
    expect(list.total).toBe(0);
  });

  it('is a 422 REGION_UNAVAILABLE for a region no host serves, and creates nothing', async () => {
    const w = await world();
    await expectError(await w.api('', { method: 'POST', body: body('nowhere-at-all') }), 422, 'REGION_UNAVAILABLE');
    expect((await expectJson<{ total: number }>(await w.api(''), 200)).total).toBe(0);
  });

  it('is a 503 NO_CAPACITY when no host of the region is online', async () => {
    const w = await world();
    // Registered but never connected, then connected, then gone again.
    const host = await registerHost();
    await expectError(await w.api('', { method: 'POST', body: body(host.region) }), 503, 'NO_CAPACITY');
    const peer = await connectHost(host);
    await expectJson(await w.api('', { method: 'POST', body: body(host.region) }), 201);
    peer.close();
    await expect
      .poll(async () => (await env.DB.prepare('SELECT status FROM hosts WHERE id = ?').bind(host.id).first<{ status: string }>())?.status)
      .toBe('offline');
    await expectError(await w.api('', { method: 'POST', body: body(host.region) }), 503, 'NO_CAPACITY');
  });
});

describe('ownership of new computers', () => {
  it('a workspace_slug is auto-created and shows as workspace_id; external ids are kept', async () => {
    const w = await world();
    const c = await createComputer(w, {
      workspace_slug: 'dr-smith-clinic',
      workspace_name: 'Dr. Smith Clinic',
      project_slug: 'records-portal',
      external_workspace_id: 'clinic_123',
      external_user_id: 'dr-smith-456',
      external_project_id: 'project_789',
    });
    const ws = await env.DB.prepare('SELECT id, name FROM workspaces WHERE org_id = ? AND slug = ?').bind(w.tenant.orgId, 'dr-smith-clinic').first<{ id: string; name: string }>();
    expect(ws).toEqual({ id: c.workspace_id, name: 'Dr. Smith Clinic' });
    expect(c.workspace_id).not.toBe(w.tenant.workspaceId);
    const project = await env.DB.prepare('SELECT id, workspace_id FROM projects WHERE slug = ?').bind('records-portal').first<{ id: string; workspace_id: string }>();
    expect(project).toEqual({ id: c.project_id, workspace_id: c.workspace_id });
    expect(c).toMatchObject({ external_workspace_id: 'clinic_123', external_user_id: 'dr-smith-456', external_project_id: 'project_789' });
    // The same slug again lands in the same workspace.
    expect((await createComputer(w, { workspace_slug: 'dr-smith-clinic' })).workspace_id).toBe(c.workspace_id);
  });

  it('the list filters by workspace_id, project_id and external_user_id', async () => {
    const w = await world();
    const inDefault = await createComputer(w, { external_user_id: 'alice' });
    const inClinic = await createComputer(w, { workspace_slug: 'clinic', external_user_id: 'bob' });
    const ids = async (query: string) => (await expectJson<{ computers: ComputerView[] }>(await w.api(query), 200)).computers.map((c) => c.id);
    expect(await ids(`?workspace_id=${inClinic.workspace_id}`)).toEqual([inClinic.id]);
    expect(await ids(`?workspace_id=${w.tenant.workspaceId}`)).toEqual([inDefault.id]);
    expect(await ids(`?project_id=${inClinic.project_id}`)).toEqual([inClinic.id]);
    expect(await ids('?external_user_id=alice')).toEqual([inDefault.id]);
    expect(await ids('?external_user_id=nobody')).toEqual([]);
    expect((await ids('')).sort()).toEqual([inDefault.id, inClinic.id].sort());
  });
});
