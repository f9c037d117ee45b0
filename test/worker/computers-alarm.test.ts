import { env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { computerStub, createComputer, getComputer, runningComputer, waitForStatus, world } from './computer-fixtures.ts';

useAgentPeers();

interface Transaction {
  amount: number;
  reason: string;
  computer_id: string | null;
}

const balanceOf = async (orgId: string) => (await env.DB.prepare('SELECT credits FROM organizations WHERE id = ?').bind(orgId).first<{ credits: number }>())!.credits;

/** Pretends the computer was last billed `ms` ago (the interval is a minute; no test waits that long). */
const backdateBilling = (id: string, ms: number) =>
  runInDurableObject(computerStub(id), async (_obj, state) => state.storage.put('billed_until', Date.now() - ms));

describe('auto-stop', () => {
  it('GET shows {auto_stop_seconds, enabled}; PATCH changes it; 0 and null disable it', async () => {
    const w = await world();
    const c = await createComputer(w);
    expect(await expectJson(await w.api(`/${c.id}/auto-stop`), 200)).toEqual({ auto_stop_seconds: 0, enabled: false });
    expect(await expectJson(await w.api(`/${c.id}/auto-stop`, { method: 'PATCH', body: { auto_stop_seconds: 3600 } }), 200)).toEqual({
      auto_stop_seconds: 3600,
      enabled: true,
    });
    expect(await expectJson(await w.api(`/${c.id}/auto-stop`), 200)).toEqual({ auto_stop_seconds: 3600, enabled: true });
    expect((await getComputer(w, c.id)).auto_stop).toBe(3600);
    expect(await expectJson(await w.api(`/${c.id}/auto-stop`, { method: 'PATCH', body: { auto_stop_seconds: null } }), 200)).toEqual({
      auto_stop_seconds: 0,
      enabled: false,
    });
    for (const bad of [-1, 1.5, '60']) {
      const err = await expectError(await w.api(`/${c.id}/auto-stop`, { method: 'PATCH', body: { auto_stop_seconds: bad } }), 400, 'VALIDATION_FAILED');
      expect(err.error.message).toMatch(/^auto_stop_seconds/);
    }
  });

  it('an idle running computer is stopped by its alarm once auto_stop_seconds have passed', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await expectJson(await w.api(`/${computer.id}/auto-stop`, { method: 'PATCH', body: { auto_stop_seconds: 1 } }), 200);
    await sleep(1100);
    // The alarm may already have fired on its own; either way it is the alarm that stops the computer.
    await runDurableObjectAlarm(computerStub(computer.id));
    expect(await peer.take('computer.stop')).toMatchObject({ type: 'computer.stop' });
    await waitForStatus(w, computer.id, 'stopped');
  });

  it('activity pushes the auto-stop back', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    // The clock is the test's to move (the object reads the same Date): a slow machine cannot make an exec look older than it is.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      await expectJson(await w.api(`/${computer.id}/auto-stop`, { method: 'PATCH', body: { auto_stop_seconds: 60 } }), 200);
      vi.setSystemTime(Date.now() + 45_000);
      await expectJson(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'true' } }), 200);
      vi.setSystemTime(Date.now() + 30_000);
      // 75 s after the PATCH but 30 s after the exec: not idle long enough.
      await runDurableObjectAlarm(computerStub(computer.id));
      expect((await getComputer(w, computer.id)).status).toBe('running');
      expect(peer.requests.some((r) => r.type === 'computer.stop')).toBe(false);
      // 61 s after the exec it is.
      vi.setSystemTime(Date.now() + 31_000);
      await runDurableObjectAlarm(computerStub(computer.id));
      expect(await peer.take('computer.stop')).toMatchObject({ type: 'computer.stop' });
    } finally {
      vi.useRealTimers();
    }
  });

  it('an idle computer whose agent is away keeps a calm alarm and is stopped once the agent is back', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await expectJson(await w.api(`/${computer.id}/auto-stop`, { method: 'PATCH', body: { auto_stop_seconds: 1 } }), 200);
    await peer.drop();
    await sleep(1100);
    await runDurableObjectAlarm(computerStub(computer.id));
    expect((await getComputer(w, computer.id)).status).toBe('running');
    // The stop could not be sent: the next try is seconds away, not a busy loop of alarms.
    const next = await runInDurableObject(computerStub(computer.id), (_obj, state) => state.storage.getAlarm());
    expect(next).not.toBeNull();
    expect(next! - Date.now()).toBeGreaterThan(5_000);

    const back = await w.host.computer(computer.id, { state: 'running' });
    expect(await runDurableObjectAlarm(computerStub(computer.id))).toBe(true);
    expect(await back.take('computer.stop')).toMatchObject({ type: 'computer.stop' });
    await waitForStatus(w, computer.id, 'stopped');
  });
});

describe('credits', () => {
  it('a running computer is charged by size when its alarm runs after the billing interval', async () => {
    const w = await world({ credits: 100 });
    const { computer: small } = await runningComputer(w, { size: 'small' });
    const { computer: large } = await runningComputer(w, { size: 'large' });
    const before = await balanceOf(w.tenant.orgId);
    const hour = 3_600_000;

    await backdateBilling(small.id, hour);
    expect(await runDurableObjectAlarm(computerStub(small.id))).toBe(true);
    const afterSmall = await balanceOf(w.tenant.orgId);
    expect(before - afterSmall).toBeCloseTo(1, 2);

    await backdateBilling(large.id, hour);
    expect(await runDurableObjectAlarm(computerStub(large.id))).toBe(true);
    expect(afterSmall - (await balanceOf(w.tenant.orgId))).toBeCloseTo(4, 2);

    const { results } = await env.DB.prepare('SELECT amount, reason, computer_id FROM credit_transactions WHERE org_id = ? AND reason = ?')
      .bind(w.tenant.orgId, 'usage')
      .all<Transaction>();
    const bySmall = results.filter((t) => t.computer_id === small.id);
    const byLarge = results.filter((t) => t.computer_id === large.id);
    expect(bySmall).toHaveLength(1);
    expect(bySmall[0].amount).toBeCloseTo(-1, 2);
    expect(byLarge).toHaveLength(1);
    expect(byLarge[0].amount).toBeCloseTo(-4, 2);
    // Still running, and the alarm is set again for the next interval.
    expect((await getComputer(w, small.id)).status).toBe('running');
    expect(await runInDurableObject(computerStub(small.id), (_obj, state) => state.storage.getAlarm())).not.toBeNull();
  });

  it('stopping charges the running time up to the stop', async () => {
    const w = await world({ credits: 100 });
    const { computer } = await runningComputer(w, { size: 'medium' });
    await backdateBilling(computer.id, 30 * 60_000);
    const before = await balanceOf(w.tenant.orgId);
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    expect(before - (await balanceOf(w.tenant.orgId))).toBeCloseTo(1, 2);
    expect(await runInDurableObject(computerStub(computer.id), (_obj, state) => state.storage.getAlarm())).toBeNull();
  });

  it('a computer whose charge empties the balance is stopped', async () => {
    const w = await world({ credits: 0.5 });
    const { computer, peer } = await runningComputer(w);
    await backdateBilling(computer.id, 3_600_000);
    await runDurableObjectAlarm(computerStub(computer.id));
    expect(await balanceOf(w.tenant.orgId)).toBeLessThanOrEqual(0);
    expect(await peer.take('computer.stop')).toMatchObject({ type: 'computer.stop' });
    await waitForStatus(w, computer.id, 'stopped');
  });

  it('a computer out of credits while its agent is away is stopped once the agent is back', async () => {
    const w = await world({ credits: 0.5 });
    const { computer, peer } = await runningComputer(w);
    await peer.drop();
    await backdateBilling(computer.id, 3_600_000);
    await runDurableObjectAlarm(computerStub(computer.id));
    expect(await balanceOf(w.tenant.orgId)).toBeLessThanOrEqual(0);
    expect((await getComputer(w, computer.id)).status).toBe('running');
    // Not forgotten: the alarm stays set to try the stop again.
    expect(await runInDurableObject(computerStub(computer.id), (_obj, state) => state.storage.getAlarm())).not.toBeNull();

    const back = await w.host.computer(computer.id, { state: 'running' });
    expect(await runDurableObjectAlarm(computerStub(computer.id))).toBe(true);
    expect(await back.take('computer.stop')).toMatchObject({ type: 'computer.stop' });
    await waitForStatus(w, computer.id, 'stopped');
  });
});
