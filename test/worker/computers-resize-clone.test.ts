import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { getComputer, runningComputer, stoppedComputer, waitForStatus, world, type ComputerView } from './computer-fixtures.ts';

useAgentPeers();

describe('resize', () => {
  it('a stopped computer takes the new size, vcpus and memory_mb, and boots with them', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    const res = await expectJson<ComputerView>(await w.api(`/${computer.id}/resize`, { method: 'POST', body: { size: 'large' } }), 200);
    expect(res).toMatchObject({ size: 'large', vcpus: 4, memory_mb: 16384, status: 'stopped' });
    expect(await getComputer(w, computer.id)).toMatchObject({ size: 'large', vcpus: 4, memory_mb: 16384 });
    expect((await peer.take('computer.resize')).spec).toMatchObject({ size: 'large', vcpus: 4, memory_mb: 16384 });
    await expectJson(await w.api(`/${computer.id}/start`, { method: 'POST' }), 200);
    expect((await peer.take('computer.start')).spec).toMatchObject({ size: 'large', vcpus: 4, memory_mb: 16384 });
  });

  it('an unknown size is a 400 naming size', async () => {
    const w = await world();
    const { computer } = await stoppedComputer(w);
    const err = await expectError(await w.api(`/${computer.id}/resize`, { method: 'POST', body: { size: 'xl' } }), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toMatch(/^size/);
    expect((await getComputer(w, computer.id)).size).toBe('small');
  });
});

describe('clone', () => {
  it('a running computer clones into a new computer (201) provisioned with clone_from = the source id', async () => {
    const w = await world();
    const { computer: src } = await runningComputer(w, { size: 'medium', external_user_id: 'u-1' });
    const res = await w.api(`/${src.id}/clone`, { method: 'POST' });
    const clone = await expectJson<ComputerView>(res, 201);
    expect(clone.id).not.toBe(src.id);
    expect(clone).toMatchObject({
      name: 'dev box-clone',
      status: 'provisioning',
      size: 'medium',
      vcpus: 2,
      memory_mb: 8192,
      workspace_id: src.workspace_id,
      project_id: src.project_id,
      external_user_id: 'u-1',
    });
    expect(await w.host.take('computer.attach')).toEqual({ type: 'computer.attach', computer_id: src.id });
    expect(await w.host.take('computer.attach')).toEqual({ type: 'computer.attach', computer_id: clone.id });
    const peer = await w.host.dial(clone.id);
    const held = peer.hold('computer.provision');
    await peer.attach('absent');
    const req = await held.request;
    expect(req.clone_from).toBe(src.id);
    expect(req.spec).toMatchObject({ id: clone.id, size: 'medium' });
    held.reply({ data: { state: 'running' } });
    await waitForStatus(w, clone.id, 'running');
    expect((await getComputer(w, src.id)).status).toBe('running');
  });

  it('a clone may be named', async () => {
    const w = await world();
    const { computer: src } = await runningComputer(w);
    const copy = await expectJson<ComputerView>(await w.api(`/${src.id}/clone`, { method: 'POST', body: { name: 'copy' } }), 201);
    expect(copy).toMatchObject({ name: 'copy', slug: `copy-${copy.id.slice(0, 8)}` });
  });
});

describe('move', () => {
  it('a stopped computer "moves" to its own region as a no-op; a region no host serves is refused', async () => {
    const w = await world();
    const { computer } = await stoppedComputer(w);
    expect(await expectJson<ComputerView>(await w.api(`/${computer.id}/move`, { method: 'POST', body: { region: w.host.region } }), 200)).toMatchObject({
      id: computer.id,
      region: w.host.region,
    });
    await expectError(await w.api(`/${computer.id}/move`, { method: 'POST', body: { region: 'elsewhere' } }), 422, 'REGION_UNAVAILABLE');
  });
});

describe('PATCH /computers/:id', () => {
  it('links an agent_session_id and answers the updated object', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const res = await expectJson<ComputerView>(await w.api(`/${computer.id}`, { method: 'PATCH', body: { agent_session_id: 'session-uuid' } }), 200);
    expect(res).toMatchObject({ id: computer.id, agent_session_id: 'session-uuid', status: 'running' });
    expect((await getComputer(w, computer.id)).agent_session_id).toBe('session-uuid');
  });
});
