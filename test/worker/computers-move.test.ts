import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { DISK_WINDOW_BYTES } from '../../schema/protocol.ts';
import { createTenant, expectError, expectJson, tenantFetch } from './helpers.ts';
import { connectHost, registerHost, sleep, useAgentPeers } from './agent-peer.ts';
import { computerStub, createComputer, getComputer, runningComputer, waitForStatus, world, type ComputerView } from './computer-fixtures.ts';
import { archiveBytes, moveWorld, scriptExport, scriptTarget } from './move-fixtures.ts';

/** vi.waitFor's own default (1 s) is too short on a loaded machine; these waits are for the far side to catch up. */
const WAIT = { timeout: 30_000, interval: 50 };

useAgentPeers();

const movingTo = async (id: string) =>
  (await env.DB.prepare('SELECT host_id, moving_to_host_id FROM computers WHERE id = ?').bind(id).first<{ host_id: string; moving_to_host_id: string | null }>())!;

const equalBytes = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);

describe('move between hosts', () => {
  it('relays the disk bytes exactly, answers with the new region once there, and the new host serves the computer from then on', async () => {
    const m = await moveWorld();
    const disk = archiveBytes(3 * DISK_WINDOW_BYTES + 12_345);
    const exported = scriptExport(m.source, disk);
    const pending = m.move();
    const target = await scriptTarget(m.far, m.computer.id);
    const res = await expectJson<ComputerView>(await pending, 200);
    expect(res).toMatchObject({ id: m.computer.id, region: m.far.region, status: 'stopped' });
    expect(equalBytes(target.received(), disk)).toBe(true);
    expect(exported.maxAhead).toBeLessThanOrEqual(DISK_WINDOW_BYTES);
    const importDone = target.peer.requests.find((r) => r.type === 'computer.import_done');
    expect(importDone).toMatchObject({ bytes: disk.byteLength, spec: { id: m.computer.id } });
    // The source's copy goes only after the target has it, and its host stops serving the computer.
    expect(m.source.requests.map((r) => r.type)).toContain('computer.destroy');
    expect(await m.host.take('computer.detach')).toEqual({ type: 'computer.detach', computer_id: m.computer.id });
    expect(await movingTo(m.computer.id)).toEqual({ host_id: m.far.id, moving_to_host_id: null });
    expect(await getComputer(m, m.computer.id)).toMatchObject({ region: m.far.region, status: 'stopped' });
    const primary = await target.primary;
    await expectJson(await m.api(`/${m.computer.id}/start`, { method: 'POST' }), 200);
    expect((await primary.take('computer.start')).spec.id).toBe(m.computer.id);
  });

  it('is `moving` while the disk travels, and nothing else may happen to it meanwhile', async () => {
    const m = await moveWorld();
    const held = m.source.hold('computer.export');
    const pending = m.move();
    const target = await scriptTarget(m.far, m.computer.id);
    await held.request;
    expect((await getComputer(m, m.computer.id)).status).toBe('moving');
    expect(await movingTo(m.computer.id)).toEqual({ host_id: m.host.id, moving_to_host_id: m.far.id });
    await expectError(await m.api(`/${m.computer.id}/start`, { method: 'POST' }), 409, 'INVALID_STATE_TRANSITION');
    await expectError(await m.move(), 409, 'INVALID_STATE_TRANSITION');
    held.reply({ data: { bytes: 0, sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' } });
    expect(await expectJson<ComputerView>(await pending, 200)).toMatchObject({ status: 'stopped', region: m.far.region });
    await target.primary;
  });

  it('acknowledges to the source only what the target has written', async () => {
    const m = await moveWorld();
    const disk = archiveBytes(DISK_WINDOW_BYTES + 1000);
    const exported = scriptExport(m.source, disk, { frameBytes: 64 * 1024 });
    const pending = m.move();
    const target = await scriptTarget(m.far, m.computer.id, { holdAcks: true });
    await vi.waitFor(() => expect(target.received().byteLength).toBe(DISK_WINDOW_BYTES), WAIT);
    await sleep(200);
    // The source has filled its window and waits: the object holds no acknowledgement the target did not give.
    expect(exported.acks).toEqual([]);
    expect(target.received().byteLength).toBe(DISK_WINDOW_BYTES);
    target.holdAcks(false);
    expect(await expectJson<ComputerView>(await pending, 200)).toMatchObject({ region: m.far.region });
    expect(equalBytes(target.received(), disk)).toBe(true);
    expect(exported.acks[0]).toBe(DISK_WINDOW_BYTES);
    await target.primary;
  });

  it('a source that sends beyond its window fails the move (502): the target drops its copy, the computer stays where it was', async () => {
    const m = await moveWorld();
    scriptExport(m.source, archiveBytes(2 * DISK_WINDOW_BYTES), { greedy: true, frameBytes: 256 * 1024 });
    const pending = m.move();
    const target = await scriptTarget(m.far, m.computer.id, { holdAcks: true });
    const err = await expectError(await pending, 502, 'AGENT_ERROR');
    expect(err.error.message).toMatch(/more disk bytes than the target has room for/);
    await expectRolledBack(m, target.peer);
  });

  it('a disk whose sha256 does not match at the target fails the move, and the computer starts where it was', async () => {
    const m = await moveWorld();
    scriptExport(m.source, archiveBytes(50_000), { lie: true });
    const pending = m.move();
    const target = await scriptTarget(m.far, m.computer.id);
    const err = await expectError(await pending, 502, 'AGENT_ERROR');
    expect(err.error.message).toMatch(/target host.*sha256/);
    await expectRolledBack(m, target.peer);
    expect(m.source.requests.map((r) => r.type)).not.toContain('computer.destroy');
    await expectJson(await m.api(`/${m.computer.id}/start`, { method: 'POST' }), 200);
    expect((await m.source.take('computer.start')).spec.id).toBe(m.computer.id);
  });

  it('a target that cannot write the disk calls the transfer off, and the move fails at once with its reason', async () => {
    const m = await moveWorld();
    scriptExport(m.source, archiveBytes(2 * DISK_WINDOW_BYTES));
    const pending = m.move();
    const target = await scriptTarget(m.far, m.computer.id, { holdAcks: true });
    await vi.waitFor(() => expect(target.received().byteLength).toBe(DISK_WINDOW_BYTES), WAIT);
    const frame = target.peer.disk.find((e) => e.type === 'disk.frame')!;
    target.peer.send({ type: 'disk.cancel', transfer_id: frame.transfer_id, reason: 'No space left on device' });
    const err = await expectError(await pending, 502, 'AGENT_ERROR');
    expect(err.error.message).toMatch(/target host cannot take the disk: No space left on device/);
    await expectRolledBack(m, target.peer);
    expect(m.source.disk.map((e) => e.type)).toContain('disk.cancel');
  });

  it('a source agent that goes away mid-transfer is a 502 AGENT_UNAVAILABLE, and nothing is lost', async () => {
    const m = await moveWorld();
    const held = m.source.hold('computer.export');
    const pending = m.move();
    const target = await scriptTarget(m.far, m.computer.id);
    await held.request;
    await m.source.drop();
    await expectError(await pending, 502, 'AGENT_UNAVAILABLE');
    await expectRolledBack(m, target.peer);
  });

  it('a target agent that goes away mid-transfer fails the move at once', async () => {
    const m = await moveWorld();
    const held = m.source.hold('computer.export');
    const pending = m.move();
    const target = await scriptTarget(m.far, m.computer.id);
    await held.request;
    await target.peer.drop({ as: 'target' });
    const err = await expectError(await pending, 502, 'AGENT_ERROR');
    expect(err.error.message).toMatch(/target host's agent disconnected/);
    expect((await getComputer(m, m.computer.id)).region).toBe(m.host.region);
    expect(m.source.disk.map((e) => e.type)).toContain('disk.cancel');
  });

  it('a target host listed online whose agent is gone is a 502 AGENT_UNAVAILABLE at once', async () => {
    const m = await moveWorld();
    m.far.close();
    await vi.waitFor(async () => expect((await env.DB.prepare('SELECT status FROM hosts WHERE id = ?').bind(m.far.id).first<{ status: string }>())?.status).toBe('offline'), WAIT);
    // The row says online (a heartbeat not yet missed), but no agent socket is there to take the attach order.
    await env.DB.prepare(`UPDATE hosts SET status = 'online' WHERE id = ?`).bind(m.far.id).run();
    await expectError(await m.move(), 502, 'AGENT_UNAVAILABLE');
    expect(await getComputer(m, m.computer.id)).toMatchObject({ status: 'stopped', region: m.host.region });
    expect((await movingTo(m.computer.id)).moving_to_host_id).toBeNull();
  });

  it('an agent too old for moves (protocol 1.1) is refused before anything changes', async () => {
    const w = await world();
    const computer = await createComputer(w);
    const peer = await w.host.dial(computer.id);
    await peer.attach('absent', { protocol: { major: 1, minor: 1 } });
    await waitForStatus(w, computer.id, 'running');
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    const far = await connectHost();
    const err = await expectError(await w.api(`/${computer.id}/move`, { method: 'POST', body: { region: far.region } }), 502, 'AGENT_ERROR');
    expect(err.error.message).toMatch(/too old/);
    expect((await getComputer(w, computer.id)).status).toBe('stopped');
  });

  it('deleting a computer mid-move calls the move off on both hosts and deletes it', async () => {
    const m = await moveWorld();
    const held = m.source.hold('computer.export');
    const pending = m.move();
    const target = await scriptTarget(m.far, m.computer.id);
    await held.request;
    expect(await expectJson(await m.api(`/${m.computer.id}`, { method: 'DELETE' }), 200)).toMatchObject({ deleted: true });
    expect((await pending).status).toBeGreaterThanOrEqual(400);
    expect(target.peer.requests.map((r) => r.type)).toContain('computer.destroy');
    expect(m.source.disk.map((e) => e.type)).toContain('disk.cancel');
    await expectError(await m.api(`/${m.computer.id}`), 404, 'NOT_FOUND');
  });

  it('an object that finds itself moving with no move running (restarted mid-move) rolls back when its agent attaches', async () => {
    const m = await moveWorld();
    await env.DB.prepare('UPDATE computers SET moving_to_host_id = ?, status = ? WHERE id = ?').bind(m.far.id, 'moving', m.computer.id).run();
    await runInDurableObject(computerStub(m.computer.id), async (obj) => {
      await obj.save({ status: 'moving', moving_to_host_id: m.far.id });
    });
    await m.source.drop();
    await m.host.computer(m.computer.id, { state: 'stopped' });
    expect(await waitForStatus(m, m.computer.id, 'stopped')).toMatchObject({ region: m.host.region });
    expect((await movingTo(m.computer.id)).moving_to_host_id).toBeNull();
  });
});

describe('move: what is refused', () => {
  it('a running computer is a 409 with the spec message', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const err = await expectError(await w.api(`/${computer.id}/move`, { method: 'POST', body: { region: 'anywhere' } }), 409, 'INVALID_STATE_TRANSITION');
    expect(err.error.message).toBe('computer must be stopped to move');
  });

  it("another tenant's computer is a 404, and it does not move", async () => {
    const m = await moveWorld();
    const other = await createTenant();
    await expectError(await tenantFetch(other.apiKey, `/api/v1/computers/${m.computer.id}/move`, { method: 'POST', body: { region: m.far.region } }), 404, 'NOT_FOUND');
    expect((await getComputer(m, m.computer.id)).region).toBe(m.host.region);
  });

  it('a region no host serves is a 422; one whose hosts are all offline is a 503 NO_CAPACITY', async () => {
    const m = await moveWorld();
    await expectError(await m.move('nowhere-at-all'), 422, 'REGION_UNAVAILABLE');
    const idle = await registerHost();
    await expectError(await m.move(idle.region), 503, 'NO_CAPACITY');
    expect(await getComputer(m, m.computer.id)).toMatchObject({ status: 'stopped', region: m.host.region });
  });
});

/** The computer is stopped on its first host, D1 forgets the target, and the target was told to drop its copy. */
async function expectRolledBack(m: Awaited<ReturnType<typeof moveWorld>>, target: { requests: readonly { type: string }[] }): Promise<void> {
  expect(await getComputer(m, m.computer.id)).toMatchObject({ status: 'stopped', region: m.host.region });
  expect(await movingTo(m.computer.id)).toEqual({ host_id: m.host.id, moving_to_host_id: null });
  expect(target.requests.map((r) => r.type)).toContain('computer.destroy');
  expect(await m.far.take('computer.detach')).toEqual({ type: 'computer.detach', computer_id: m.computer.id });
}
