/**
 * A computer whose boot keeps failing ends in `error` with a reason on GET
 * computer, instead of being tried again and again — also when the failing
 * boot takes its agent down with it, so that the failure never reports.
 */
import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { getComputer, runningComputer, stoppedComputer, waitForStatus, world, type ComputerView } from './computer-fixtures.ts';
import { MAX_BOOT_ATTEMPTS } from '../../durable-objects/computer/lifecycle.ts';

useAgentPeers();

describe('boots that fail', () => {
  it('a failed start leaves the computer stopped with the reason; the third in a row gives up in error', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    peer.onRequest('computer.start', () => ({ error: { code: 'FAILED', message: 'the computer did not come up' } }));
    for (let i = 1; i < MAX_BOOT_ATTEMPTS; i++) {
      await expectError(await w.api(`/${computer.id}/start`, { method: 'POST' }), 502, 'AGENT_ERROR');
      expect(await getComputer(w, computer.id)).toMatchObject({ status: 'stopped', status_reason: 'boot failed: the computer did not come up' });
    }
    await expectError(await w.api(`/${computer.id}/start`, { method: 'POST' }), 502, 'AGENT_ERROR');
    expect(await getComputer(w, computer.id)).toMatchObject({ status: 'error', status_reason: 'boot failed: the computer did not come up' });
    expect(peer.requests.filter((r) => r.type === 'computer.start')).toHaveLength(MAX_BOOT_ATTEMPTS);

    // Once its cause is fixed it may be started again, and a boot that works clears the reason.
    peer.onRequest('computer.start', () => ({ data: { state: 'running' } }));
    expect(await expectJson<ComputerView>(await w.api(`/${computer.id}/start`, { method: 'POST' }), 200)).toMatchObject({ status: 'running', status_reason: null });
  });

  it('started again from error and failing again, it is back in error after one more try', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    peer.onRequest('computer.start', () => ({ error: { code: 'FAILED', message: 'no' } }));
    for (let i = 0; i < MAX_BOOT_ATTEMPTS; i++) await w.api(`/${computer.id}/start`, { method: 'POST' });
    expect((await getComputer(w, computer.id)).status).toBe('error');
    const before = peer.requests.length;
    await expectError(await w.api(`/${computer.id}/start`, { method: 'POST' }), 502, 'AGENT_ERROR');
    expect((await getComputer(w, computer.id)).status).toBe('error');
    expect(peer.requests.slice(before).filter((r) => r.type === 'computer.start')).toHaveLength(1);
  });

  it('a boot that takes its agent down each time is not tried for ever: after three it is an error and the next agent is left alone', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await peer.drop();
    // The host rebooted: the computer is there but stopped, so the object starts it…
    let agent = await w.host.dial(computer.id);
    for (let i = 0; i < MAX_BOOT_ATTEMPTS; i++) {
      agent.onRequest('computer.start', () => 'no-reply');
      await agent.attach('stopped');
      await agent.take('computer.start');
      // …and the agent dies in the middle of it, every time.
      await agent.drop();
      expect((await getComputer(w, computer.id)).status).toBe('starting');
      agent = await w.host.dial(computer.id);
    }
    await agent.attach('stopped');
    const errored = await waitForStatus(w, computer.id, 'error');
    expect(errored.status_reason).toMatch(/^its boot was tried 3 times in a row without success/);
    expect(agent.requests.filter((r) => r.type === 'computer.start')).toEqual([]);
  });

  it("a computer that dies on its own is stopped with the agent's reason", async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.send({ type: 'computer.exited', reason: 'the computer ran out of memory and its init was killed' });
    const stopped = await waitForStatus(w, computer.id, 'stopped');
    expect(stopped.status_reason).toBe('the computer ran out of memory and its init was killed');
  });

  it("a computer whose host lost its disk is an error that can only be deleted", async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    await peer.drop();
    await w.host.computer(computer.id, { state: 'absent' });
    const errored = await waitForStatus(w, computer.id, 'error');
    expect(errored.status_reason).toBe("the host no longer has this computer's disk");
    const refused = await expectError(await w.api(`/${computer.id}/start`, { method: 'POST' }), 409, 'INVALID_STATE_TRANSITION');
    expect(refused.error.message).toMatch(/disk.*can only be deleted/);
  });
});
