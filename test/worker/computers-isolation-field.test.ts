/**
 * The `isolation` extension: a computer is a namespace sandbox or a microVM.
 * Create takes it (default: the operator's DEFAULT_ISOLATION, else sandbox),
 * the object shows it, placement only picks hosts whose agent offers it,
 * clones keep it, moves need a target that offers it, and the agent gets it
 * in every spec.
 */
import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { defaultIsolation } from '../../worker/computers/placement.ts';
import type { Env } from '../../worker/env.ts';
import { expectError, expectJson, operatorFetch, tenantFetch } from './helpers.ts';
import { connectHost, registerHost, useAgentPeers } from './agent-peer.ts';
import { createComputer, getComputer, runningComputer, stoppedComputer, waitForStatus, world, type ComputerView } from './computer-fixtures.ts';

useAgentPeers();

const body = (region: string, extra: Record<string, unknown> = {}) => ({ name: 'iso box', template_type: 'miosa-desktop', region, ...extra });

/** A world whose host offers both drivers. */
async function vmWorld() {
  const w = await world();
  w.host.close();
  const host = await connectHost(w.host, [], { drivers: ['sandbox', 'vm'], vm_accel: 'tcg' });
  return { ...w, host };
}

describe('isolation on create', () => {
  it('a computer is a sandbox unless asked otherwise; GET shows it and the agent is told', async () => {
    const w = await world();
    const c = await createComputer(w);
    expect(c).toMatchObject({ isolation: 'sandbox' });
    expect(await getComputer(w, c.id)).toMatchObject({ isolation: 'sandbox' });
    const peer = await w.host.dial(c.id);
    const provision = peer.hold('computer.provision');
    await peer.attach('absent');
    expect((await provision.request).spec.isolation).toBe('sandbox');
    provision.reply({ data: { state: 'running' } });
  });

  it('"isolation": "vm" lands on a host that offers VMs, and its agent provisions a VM', async () => {
    const w = await vmWorld();
    const c = await createComputer(w, { isolation: 'vm' });
    expect(c).toMatchObject({ isolation: 'vm', status: 'provisioning' });
    expect(await w.host.take('computer.attach')).toEqual({ type: 'computer.attach', computer_id: c.id });
    const peer = await w.host.dial(c.id);
    const provision = peer.hold('computer.provision');
    await peer.attach('absent');
    expect((await provision.request).spec).toMatchObject({ id: c.id, isolation: 'vm' });
    provision.reply({ data: { state: 'running' } });
    expect(await waitForStatus(w, c.id, 'running')).toMatchObject({ isolation: 'vm' });
    // Starting it again later still says vm.
    await expectJson(await w.api(`/${c.id}/stop`, { method: 'POST' }), 200);
    const start = peer.hold('computer.start');
    const started = w.api(`/${c.id}/start`, { method: 'POST' });
    expect((await start.request).spec.isolation).toBe('vm');
    start.reply({ data: { state: 'running' } });
    await expectJson(await started, 200);
  });

  it('placement skips hosts that do not offer the isolation, however idle', async () => {
    const w = await world();
    // The region's sandbox-only host has nothing on it; the VM host already has a computer.
    const vmHost = await connectHost(await registerHost(w.host.region), [], { drivers: ['sandbox', 'vm'] });
    await createComputer(w, { isolation: 'vm' });
    expect(await vmHost.take('computer.attach')).toMatchObject({ type: 'computer.attach' });
    const second = await createComputer(w, { isolation: 'vm' });
    expect(await vmHost.take('computer.attach')).toEqual({ type: 'computer.attach', computer_id: second.id });
    const row = await env.DB.prepare('SELECT host_id, isolation FROM computers WHERE id = ?').bind(second.id).first<{ host_id: string; isolation: string }>();
    expect(row).toEqual({ host_id: vmHost.id, isolation: 'vm' });
  });

  it('is a 422 ISOLATION_UNAVAILABLE when no host of the region offers it, and creates nothing', async () => {
    const w = await world();
    const err = await expectError(await w.api('', { method: 'POST', body: body(w.host.region, { isolation: 'vm' }) }), 422, 'ISOLATION_UNAVAILABLE');
    expect(err.error.message).toContain('"vm"');
    expect((await expectJson<{ total: number }>(await w.api(''), 200)).total).toBe(0);
  });

  it('is a 503 NO_CAPACITY when the hosts that offer it are offline', async () => {
    const w = await vmWorld();
    w.host.close();
    await expect
      .poll(async () => (await env.DB.prepare('SELECT status FROM hosts WHERE id = ?').bind(w.host.id).first<{ status: string }>())?.status)
      .toBe('offline');
    await expectError(await w.api('', { method: 'POST', body: body(w.host.region, { isolation: 'vm' }) }), 503, 'NO_CAPACITY');
  });

  it('is a 400 naming the field for an unknown isolation', async () => {
    const w = await world();
    for (const isolation of ['container', 'VM', '', 7, null]) {
      const err = await expectError(await w.api('', { method: 'POST', body: body(w.host.region, { isolation }) }), 400, 'VALIDATION_FAILED');
      expect(err.error.message).toContain('isolation');
    }
  });

  it('the operator default comes from DEFAULT_ISOLATION, and a bad one says what is wrong', () => {
    const base = env as unknown as Env;
    expect(defaultIsolation({ ...base, DEFAULT_ISOLATION: undefined })).toBe('sandbox');
    expect(defaultIsolation({ ...base, DEFAULT_ISOLATION: 'vm' })).toBe('vm');
    expect(() => defaultIsolation({ ...base, DEFAULT_ISOLATION: 'kvm' })).toThrow(/DEFAULT_ISOLATION is "kvm"/);
  });
});

describe('isolation after create', () => {
  it('a clone keeps its source isolation', async () => {
    const w = await vmWorld();
    const { computer: src } = await runningComputer(w, { isolation: 'vm' });
    const clone = await expectJson<ComputerView>(await w.api(`/${src.id}/clone`, { method: 'POST' }), 201);
    expect(clone.isolation).toBe('vm');
    const peer = await w.host.dial(clone.id);
    const provision = peer.hold('computer.provision');
    await peer.attach('absent');
    expect((await provision.request).spec.isolation).toBe('vm');
    expect((await provision.request).clone_from).toBe(src.id);
    provision.reply({ data: { state: 'running' } });
  });

  it('a move needs a target host that offers the computer isolation', async () => {
    const w = await vmWorld();
    const { computer } = await stoppedComputer(w, { isolation: 'vm' });
    const sandboxOnly = await connectHost();
    await expectError(await w.api(`/${computer.id}/move`, { method: 'POST', body: { region: sandboxOnly.region } }), 422, 'ISOLATION_UNAVAILABLE');
    expect(await getComputer(w, computer.id)).toMatchObject({ status: 'stopped', region: w.host.region });
  });

  it('the host view shows which drivers a host offers and how its VMs run', async () => {
    const w = await vmWorld();
    const host = await expectJson<{ data: { drivers: string[]; vm_accel: string | null } }>(await operatorFetch(`/api/v1/admin/hosts/${w.host.id}`), 200);
    expect(host.data).toMatchObject({ drivers: ['sandbox', 'vm'], vm_accel: 'tcg' });
    const plain = await connectHost();
    const other = await expectJson<{ data: { drivers: string[]; vm_accel: string | null } }>(await operatorFetch(`/api/v1/admin/hosts/${plain.id}`), 200);
    expect(other.data).toMatchObject({ drivers: ['sandbox'], vm_accel: null });
    // The list of computers shows it too.
    await createComputer(w, { isolation: 'vm' });
    const list = await expectJson<{ computers: ComputerView[] }>(await tenantFetch(w.tenant.apiKey, '/api/v1/computers'), 200);
    expect(list.computers.map((c) => c.isolation)).toEqual(['vm']);
  });
});

describe('stop keeping the memory (VMs)', () => {
  it('keep_memory asks the agent to keep it, shows memory_kept, and the next start resumes and clears it', async () => {
    const w = await vmWorld();
    const { computer, peer } = await runningComputer(w, { isolation: 'vm' });
    expect(computer.memory_kept).toBe(false);
    const stop = peer.hold('computer.stop');
    const stopped = w.api(`/${computer.id}/stop`, { method: 'POST', body: { keep_memory: true } });
    expect(await stop.request).toMatchObject({ type: 'computer.stop', keep_memory: true });
    stop.reply({ data: { state: 'stopped' } });
    expect(await expectJson<ComputerView>(await stopped, 200)).toMatchObject({ status: 'stopped', memory_kept: true });
    expect(await getComputer(w, computer.id)).toMatchObject({ memory_kept: true });
    expect(await expectJson<ComputerView>(await w.api(`/${computer.id}/start`, { method: 'POST' }), 200)).toMatchObject({ status: 'running', memory_kept: false });
    // A plain stop (no body, as the page has it) keeps nothing.
    const plain = peer.hold('computer.stop');
    const again = w.api(`/${computer.id}/stop`, { method: 'POST' });
    expect((await plain.request).keep_memory).toBeUndefined();
    plain.reply({ data: { state: 'stopped' } });
    expect(await expectJson<ComputerView>(await again, 200)).toMatchObject({ status: 'stopped', memory_kept: false });
  });

  it('is a 400 for a sandbox, which then keeps running untouched', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const err = await expectError(await w.api(`/${computer.id}/stop`, { method: 'POST', body: { keep_memory: true } }), 400, 'BAD_REQUEST');
    expect(err.error.message).toContain('isolation "vm"');
    expect(peer.requests.filter((r) => r.type === 'computer.stop')).toEqual([]);
    expect(await getComputer(w, computer.id)).toMatchObject({ status: 'running', memory_kept: false });
  });

  it('an agent too old to keep memory is not asked to stop half-way: the answer says why', async () => {
    const w = await vmWorld();
    const created = await createComputer(w, { isolation: 'vm' });
    const peer = await w.host.dial(created.id);
    await peer.attach('absent', { protocol: { major: 1, minor: 6 } });
    await waitForStatus(w, created.id, 'running');
    const err = await expectError(await w.api(`/${created.id}/stop`, { method: 'POST', body: { keep_memory: true } }), 502, 'AGENT_ERROR');
    expect(err.error.message).toContain('too old to keep its memory');
    expect(peer.requests.filter((r) => r.type === 'computer.stop')).toEqual([]);
  });

  it('a resize drops kept memory (it was of other hardware)', async () => {
    const w = await vmWorld();
    const { computer, peer } = await runningComputer(w, { isolation: 'vm' });
    const stop = peer.hold('computer.stop');
    const stopped = w.api(`/${computer.id}/stop`, { method: 'POST', body: { keep_memory: true } });
    (await stop.request, stop.reply({ data: { state: 'stopped' } }));
    expect(await expectJson<ComputerView>(await stopped, 200)).toMatchObject({ memory_kept: true });
    expect(await expectJson<ComputerView>(await w.api(`/${computer.id}/resize`, { method: 'POST', body: { size: 'medium' } }), 200)).toMatchObject({ memory_kept: false });
  });
});
