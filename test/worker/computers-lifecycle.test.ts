import { describe, expect, it } from 'vitest';
import { expectError, expectJson, operatorFetch } from './helpers.ts';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { createComputer, getComputer, runningComputer, stoppedComputer, waitForStatus, world, type ComputerView } from './computer-fixtures.ts';

useAgentPeers();

describe('provisioning', () => {
  it('stays provisioning until the agent answers provision with running, then is running', async () => {
    const w = await world();
    const c = await createComputer(w, { selected_apps: ['nodejs'] });
    const peer = await w.host.dial(c.id);
    const held = peer.hold('computer.provision');
    await peer.attach('absent');
    const req = await held.request;
    expect(req.spec).toEqual({
      id: c.id,
      name: 'dev box',
      template: 'miosa-desktop',
      size: 'small',
      vcpus: 1,
      memory_mb: 4096,
      isolation: 'sandbox',
      disk_gb: 20,
      selected_apps: ['nodejs'],
      env: {},
    });
    expect(req.clone_from).toBeUndefined();
    await sleep(50);
    expect((await getComputer(w, c.id)).status).toBe('provisioning');
    held.reply({ data: { state: 'running' } });
    const running = await waitForStatus(w, c.id, 'running');
    expect(running.vm_id).toBe(c.id);
  });

  it('a failed provision ends in error', async () => {
    const w = await world();
    const c = await createComputer(w);
    const peer = await w.host.dial(c.id);
    peer.onRequest('computer.provision', () => ({ error: { code: 'FAILED', message: 'template build failed' } }));
    await peer.attach('absent');
    const errored = await waitForStatus(w, c.id, 'error');
    expect(errored.status_reason).toBe('provisioning failed: template build failed');
    // A computer whose provisioning failed can only be deleted.
    const err = await expectError(await w.api(`/${c.id}/start`, { method: 'POST' }), 409, 'INVALID_STATE_TRANSITION');
    expect(err.error.message).toBe('computer cannot be started: provisioning failed: template build failed; it can only be deleted');
  });

  it('a provision answered with another state than running ends in error', async () => {
    const w = await world();
    const c = await createComputer(w);
    const peer = await w.host.dial(c.id);
    peer.onRequest('computer.provision', () => ({ data: { state: 'stopped' } }));
    await peer.attach('absent');
    await waitForStatus(w, c.id, 'error');
  });
});

describe('stop, start, restart', () => {
  it('stop: stopping while the agent works, stopped only after its result', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const held = peer.hold('computer.stop');
    const res = w.api(`/${computer.id}/stop`, { method: 'POST' });
    await held.request;
    expect((await getComputer(w, computer.id)).status).toBe('stopping');
    held.reply({ data: { state: 'stopped' } });
    expect(await expectJson<ComputerView>(await res, 200)).toMatchObject({ id: computer.id, status: 'stopped' });
    expect((await getComputer(w, computer.id)).status).toBe('stopped');
  });

  it('start: starting while the agent works, running after; the start carries the spec', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w, { size: 'medium' });
    const held = peer.hold('computer.start');
    const res = w.api(`/${computer.id}/start`, { method: 'POST' });
    const req = await held.request;
    expect(req.spec).toMatchObject({ id: computer.id, size: 'medium', vcpus: 2, memory_mb: 8192 });
    expect((await getComputer(w, computer.id)).status).toBe('starting');
    held.reply({ data: { state: 'running' } });
    expect(await expectJson<ComputerView>(await res, 200)).toMatchObject({ status: 'running' });
  });

  it('restart: the agent is told stop then start, and the computer is running again', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const before = peer.requests.length;
    const held = peer.hold('computer.start');
    const res = w.api(`/${computer.id}/restart`, { method: 'POST' });
    await held.request;
    expect((await getComputer(w, computer.id)).status).toBe('restarting');
    held.reply({ data: { state: 'running' } });
    expect(await expectJson<ComputerView>(await res, 200)).toMatchObject({ status: 'running' });
    expect(peer.requests.slice(before).map((r) => r.type)).toEqual(['computer.stop', 'computer.start']);
  });

  it('a second stop while one is in flight is a 409', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const held = peer.hold('computer.stop');
    const first = w.api(`/${computer.id}/stop`, { method: 'POST' });
    await held.request;
    const err = await expectError(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 409, 'INVALID_STATE_TRANSITION');
    expect(err.error.message).toBe('computer cannot be stopped from its current status');
    held.reply({ data: { state: 'stopped' } });
    await expectJson(await first, 200);
    expect(peer.requests.filter((r) => r.type === 'computer.stop')).toHaveLength(1);
  });

  it('a stop the agent fails leaves the computer running', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('computer.stop', () => ({ error: { code: 'FAILED', message: 'cannot stop' } }));
    await expectError(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 502, 'AGENT_ERROR');
    expect((await getComputer(w, computer.id)).status).toBe('running');
  });

  it('refusals are 409s with the spec messages', async () => {
    const w = await world();
    const { computer: running } = await runningComputer(w);
    const { computer: stopped } = await stoppedComputer(w);
    const cases: [string, string][] = [
      [`/${stopped.id}/stop`, 'computer cannot be stopped from its current status'],
      [`/${stopped.id}/restart`, 'computer must be running to restart'],
      [`/${stopped.id}/clone`, 'computer must be running to clone'],
    ];
    for (const [path, message] of cases) {
      const err = await expectError(await w.api(path, { method: 'POST' }), 409, 'INVALID_STATE_TRANSITION');
      expect(err.error.message, path).toBe(message);
    }
    const resize = await expectError(await w.api(`/${running.id}/resize`, { method: 'POST', body: { size: 'large' } }), 409, 'INVALID_STATE_TRANSITION');
    expect(resize.error.message).toBe('computer must be stopped to resize');
    const move = await expectError(await w.api(`/${running.id}/move`, { method: 'POST', body: { region: 'elsewhere' } }), 409, 'INVALID_STATE_TRANSITION');
    expect(move.error.message).toBe('computer must be stopped to move');
    expect((await getComputer(w, running.id)).status).toBe('running');
    expect((await getComputer(w, stopped.id)).status).toBe('stopped');
  });

  it('a provisioning computer cannot be stopped or restarted', async () => {
    const w = await world();
    const c = await createComputer(w);
    for (const [action, message] of [
      ['stop', 'computer cannot be stopped from its current status'],
      ['restart', 'computer must be running to restart'],
    ]) {
      const err = await expectError(await w.api(`/${c.id}/${action}`, { method: 'POST' }), 409, 'INVALID_STATE_TRANSITION');
      expect(err.error.message).toBe(message);
    }
  });

  it('without a connected agent stop and start are 502 AGENT_UNAVAILABLE and the status does not move', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await peer.drop();
    const err = await expectError(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 502, 'AGENT_UNAVAILABLE');
    expect(err.error.message).toMatch(/agent/);
    expect((await getComputer(w, computer.id)).status).toBe('running');

    const { computer: stopped, peer: peer2 } = await stoppedComputer(w);
    await peer2.drop();
    await expectError(await w.api(`/${stopped.id}/start`, { method: 'POST' }), 502, 'AGENT_UNAVAILABLE');
    expect((await getComputer(w, stopped.id)).status).toBe('stopped');
  });

  it('start is a 402 INSUFFICIENT_CREDITS once the balance is gone', async () => {
    const w = await world({ credits: 1 });
    const { computer } = await stoppedComputer(w);
    await expectJson(
      await operatorFetch(`/api/v1/admin/organizations/${w.tenant.orgId}/credits`, { method: 'POST', body: { amount: -5, reason: 'test drain' } }),
      201,
    );
    await expectError(await w.api(`/${computer.id}/start`, { method: 'POST' }), 402, 'INSUFFICIENT_CREDITS');
    expect((await getComputer(w, computer.id)).status).toBe('stopped');
  });
});

describe('an agent that goes away mid-operation', () => {
  it('mid-stop: the status stays stopping; on re-attach (running) the object re-sends stop and ends stopped', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const held = peer.hold('computer.stop');
    const res = w.api(`/${computer.id}/stop`, { method: 'POST' });
    await held.request;
    await peer.drop();
    await expectError(await res, 502, 'AGENT_UNAVAILABLE');
    expect((await getComputer(w, computer.id)).status).toBe('stopping');

    const again = await w.host.computer(computer.id, { state: 'running' });
    expect(await again.take('computer.stop')).toMatchObject({ type: 'computer.stop' });
    await waitForStatus(w, computer.id, 'stopped');
  });

  it('mid-provision: on re-attach (absent) the object provisions again and ends running', async () => {
    const w = await world();
    const c = await createComputer(w);
    const peer = await w.host.dial(c.id);
    peer.onRequest('computer.provision', () => 'no-reply');
    await peer.attach('absent');
    await peer.take('computer.provision');
    await peer.drop();
    const again = await w.host.computer(c.id, { state: 'absent' });
    expect((await again.take('computer.provision')).spec.id).toBe(c.id);
    await waitForStatus(w, c.id, 'running');
  });

  it('a running computer whose host reports it absent is in error', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await peer.drop();
    await w.host.computer(computer.id, { state: 'absent' });
    await waitForStatus(w, computer.id, 'error');
  });

  it('a stopped computer the host reports running is stopped again, and stays stopped', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    await peer.drop();
    const again = await w.host.computer(computer.id, { state: 'running' });
    expect(await again.take('computer.stop')).toMatchObject({ type: 'computer.stop' });
    expect((await getComputer(w, computer.id)).status).toBe('stopped');
  });

  it('a running computer the host reports stopped (host rebooted) is started again', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await peer.drop();
    const again = await w.host.computer(computer.id, { state: 'stopped' });
    expect((await again.take('computer.start')).spec.id).toBe(computer.id);
    await waitForStatus(w, computer.id, 'running');
  });

  it('computer.exited from the agent marks a running computer stopped', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.send({ type: 'computer.exited', reason: 'out of memory' });
    await waitForStatus(w, computer.id, 'stopped');
  });
});
