/**
 * Capacity: a host takes computers only up to its CPUs and memory (from its
 * agent's hello) times the overcommit ratios (wrangler.toml: 4x CPU, no
 * memory overcommit), counted over the computers that hold room
 * (provisioning, starting, running, restarting, stopping). Create, start,
 * clone and resize with no room answer 503 NO_CAPACITY with Retry-After and
 * change nothing. The hosts here are scripted agents of known sizes, so
 * nothing depends on the machine that runs the tests.
 */
import { env } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { connectHost, registerHost, useAgentPeers } from './agent-peer.ts';
import { createComputer, getComputer, runningComputer, stoppedComputer, world, type ComputerView, type World } from './computer-fixtures.ts';
import { hostsWithRoom, overcommitOf } from '../../worker/computers/placement.ts';

useAgentPeers();

/** 2 CPUs, 16 GiB: with 4x CPU and 1x memory, room for 8 vCPUs and 16384 MiB. */
const SMALL_HOST = { cpus: 2, memory_mb: 16384 };

async function expectNoCapacity(res: Response): Promise<string> {
  const body = await expectError(res, 503, 'NO_CAPACITY');
  expect(res.headers.get('retry-after')).toBe('30');
  return body.error.message;
}

const computerCount = async (w: World) => (await expectJson<{ total: number }>(await w.api(''), 200)).total;

describe('capacity of a host', () => {
  it('takes small computers up to its memory; the next create is a 503 NO_CAPACITY with Retry-After, and nothing is made', async () => {
    const w = await world({ host: SMALL_HOST });
    for (let i = 0; i < 4; i++) await createComputer(w, { name: `small ${i}` });
    const message = await expectNoCapacity(await w.api('', { method: 'POST', body: { name: 'one too many', template_type: 'miosa-desktop', region: w.host.region } }));
    expect(message).toBe(`no host in region "${w.host.region}" has room for a small computer (1 vCPU, 4096 MiB) now; try again later, or choose a smaller size`);
    expect(await computerCount(w)).toBe(4);
  });

  it('the issue: one large computer fits a 2-CPU 23 GiB host, a second does not', async () => {
    const w = await world({ host: { cpus: 2, memory_mb: 23 * 1024 } });
    await createComputer(w, { size: 'large' });
    await expectNoCapacity(await w.api('', { method: 'POST', body: { name: 'second large', template_type: 'miosa-desktop', size: 'large', region: w.host.region } }));
    // A small one still fits beside it.
    await createComputer(w, { size: 'small' });
  });

  it('counts vCPUs too: 8 vCPUs of room hold two large computers whatever the memory', async () => {
    const w = await world({ host: { cpus: 2, memory_mb: 1024 * 1024 } });
    await createComputer(w, { size: 'large' });
    await createComputer(w, { size: 'large' });
    await expectNoCapacity(await w.api('', { method: 'POST', body: { name: 'x', template_type: 'miosa-desktop', size: 'small', region: w.host.region } }));
  });

  it('a size larger than any host is told so', async () => {
    const w = await world({ host: { cpus: 1, memory_mb: 8192 } });
    const message = await expectNoCapacity(await w.api('', { method: 'POST', body: { name: 'x', template_type: 'miosa-desktop', size: 'large', region: w.host.region } }));
    expect(message).toMatch(/is large enough for a large computer/);
  });

  it('a stopped computer holds no room: another may start; starting it then is a 503 and it stays stopped; once room frees it starts', async () => {
    const w = await world({ host: { cpus: 2, memory_mb: 8192 } });
    const { computer: a } = await stoppedComputer(w, { name: 'a' });
    const { computer: b } = await runningComputer(w, { name: 'b' });
    const c = await createComputer(w, { name: 'c' });
    await expectNoCapacity(await w.api(`/${a.id}/start`, { method: 'POST' }));
    expect(await getComputer(w, a.id)).toMatchObject({ status: 'stopped' });
    await expectJson(await w.api(`/${c.id}`, { method: 'DELETE' }), 200);
    expect(await expectJson<ComputerView>(await w.api(`/${a.id}/start`, { method: 'POST' }), 200)).toMatchObject({ status: 'running' });
    // And now b cannot come back once stopped.
    await expectJson(await w.api(`/${b.id}/stop`, { method: 'POST' }), 200);
    await createComputer(w, { name: 'd' });
    await expectNoCapacity(await w.api(`/${b.id}/start`, { method: 'POST' }));
  });

  it("clone takes room on the source's host, and is a 503 when there is none", async () => {
    const w = await world({ host: { cpus: 2, memory_mb: 8192 } });
    const { computer: src } = await runningComputer(w);
    expect(await expectJson<ComputerView>(await w.api(`/${src.id}/clone`, { method: 'POST', body: {} }), 201)).toMatchObject({ status: 'provisioning' });
    await expectNoCapacity(await w.api(`/${src.id}/clone`, { method: 'POST', body: {} }));
    expect(await computerCount(w)).toBe(2);
  });

  it('resize to a size its host cannot start is a 503 and keeps the size; one that fits is done', async () => {
    // 16 GiB: a large computer alone would fit, but not beside the running neighbour.
    const w = await world({ host: { cpus: 8, memory_mb: 16384 } });
    const { computer } = await stoppedComputer(w);
    await runningComputer(w, { name: 'neighbour' });
    await expectNoCapacity(await w.api(`/${computer.id}/resize`, { method: 'POST', body: { size: 'large' } }));
    expect(await getComputer(w, computer.id)).toMatchObject({ size: 'small', memory_mb: 4096 });
    expect(await expectJson<ComputerView>(await w.api(`/${computer.id}/resize`, { method: 'POST', body: { size: 'medium' } }), 200)).toMatchObject({ size: 'medium' });
  });

  it('creates racing for the last room: exactly one gets it', async () => {
    const w = await world({ host: { cpus: 2, memory_mb: 8192 } });
    await createComputer(w, { name: 'first' });
    const body = { name: 'racer', template_type: 'miosa-desktop', region: w.host.region };
    const statuses = (await Promise.all(Array.from({ length: 4 }, () => w.api('', { method: 'POST', body })))).map((r) => r.status).sort();
    expect(statuses).toEqual([201, 503, 503, 503]);
    expect(await computerCount(w)).toBe(2);
  });
});

describe('placement across hosts', () => {
  it('goes to the host with the most room left, and to another when one is full', async () => {
    const w = await world({ host: { cpus: 2, memory_mb: 8192 } });
    const bigger = await connectHost(await registerHost(w.host.region), [], { cpus: 4, memory_mb: 16384 });
    const hostOf = async (id: string) =>
      (await env.DB.prepare('SELECT host_id FROM computers WHERE id = ?').bind(id).first<{ host_id: string }>())!.host_id;
    const placed: string[] = [];
    for (let i = 0; i < 6; i++) placed.push(await hostOf((await createComputer(w, { name: `c${i}` })).id));
    // 16 GiB and 8 GiB: the bigger host takes the first two, then they alternate while both have room, then it is full.
    expect(placed.filter((h) => h === bigger.id)).toHaveLength(4);
    expect(placed.filter((h) => h === w.host.id)).toHaveLength(2);
    await expectNoCapacity(await w.api('', { method: 'POST', body: { name: 'full', template_type: 'miosa-desktop', region: w.host.region } }));
  });

  it('hosts that are offline take nothing; a region with none online is a 503 saying so', async () => {
    const w = await world({ host: SMALL_HOST });
    w.host.close();
    await vi.waitFor(
      async () => {
        const row = await env.DB.prepare('SELECT status FROM hosts WHERE id = ?').bind(w.host.id).first<{ status: string }>();
        if (row?.status !== 'offline') throw new Error(`host is ${row?.status}`);
      },
      { timeout: 10_000, interval: 20 },
    );
    const message = await expectNoCapacity(await w.api('', { method: 'POST', body: { name: 'x', template_type: 'miosa-desktop', region: w.host.region } }));
    expect(message).toBe(`no host is online in region "${w.host.region}"; start a host agent there and try again`);
  });

  it("the operator's ratios are read from the Worker's vars; a bad one falls back to the default", async () => {
    expect(overcommitOf(env)).toEqual({ cpu: 4, memory: 1 });
    expect(overcommitOf({ ...env, CPU_OVERCOMMIT: '1.5', MEMORY_OVERCOMMIT: '2' })).toEqual({ cpu: 1.5, memory: 2 });
    expect(overcommitOf({ ...env, CPU_OVERCOMMIT: 'lots', MEMORY_OVERCOMMIT: '-1' })).toEqual({ cpu: 4, memory: 1 });
    // With memory overcommitted 2x, a 16 GiB host has room for a second large computer's memory.
    const w = await world({ host: { cpus: 8, memory_mb: 16384 } });
    await createComputer(w, { size: 'large' });
    await expect(hostsWithRoom(env, w.host.region, 'large', 'sandbox')).rejects.toThrow(/no host/);
    expect(await hostsWithRoom({ ...env, MEMORY_OVERCOMMIT: '2' }, w.host.region, 'large', 'sandbox')).toEqual([{ id: w.host.id, region: w.host.region }]);
  });
});
