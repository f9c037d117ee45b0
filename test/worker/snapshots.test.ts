/**
 * Snapshots (issue 11) against a scripted agent: the records and their
 * statuses, what the host is asked to do (copy, put back, provision from a
 * snapshot, remove), restore in place and into a new computer, deletion with
 * the computer unless kept, progress as SSE, and the hourly storage charge.
 */
import { runInDurableObject, env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { expectError, expectJson, operatorFetch, tenantFetch } from './helpers.ts';
import { connectHost, useAgentPeers, type ComputerPeer } from './agent-peer.ts';
import { getComputer, runningComputer, stoppedComputer, waitForStatus, world, type ComputerView, type World } from './computer-fixtures.ts';
import { SseReader } from '../e2e/sse.ts';
import { SNAPSHOT_BILLING_MS } from '../../durable-objects/snapshots/snapshot-billing.ts';
import { MAX_SNAPSHOTS_PER_COMPUTER } from '../../durable-objects/snapshots/snapshot-rows.ts';

useAgentPeers();

interface SnapshotView {
  id: string;
  computer_id: string;
  tenant_id: string;
  workspace_id: string;
  project_id: string;
  comment: string | null;
  status: string;
  error: string | null;
  rootfs_size_bytes: number | null;
  keep: boolean;
  created_at: string;
  updated_at: string;
}

const take = async (w: World, id: string, body: Record<string, unknown> = {}) =>
  (await expectJson<{ data: SnapshotView }>(await w.api(`/${id}/snapshots`, { method: 'POST', body }), 201)).data;
const list = async (w: World, id: string) => (await expectJson<{ data: SnapshotView[]; page: { total: number } }>(await w.api(`/${id}/snapshots`), 200)).data;

/** The progress events of a snapshot (replayed from its first), until one with `status` and a last step arrives. */
async function progressUntil(w: World, computerId: string, sid: string, done: (d: Record<string, unknown>) => boolean): Promise<Record<string, unknown>[]> {
  const res = await tenantFetch(w.tenant.apiKey, `/api/v1/computers/${computerId}/snapshots/${sid}/events`);
  expect(res.status).toBe(200);
  const reader = new SseReader(res);
  const seen: Record<string, unknown>[] = [];
  for (;;) {
    const m = await reader.next();
    if (!m) throw new Error(`the stream ended; saw ${JSON.stringify(seen)}`);
    expect(m.event).toBe('snapshot_progress');
    const d = JSON.parse(m.data) as Record<string, unknown>;
    seen.push(d);
    if (done(d)) {
      await reader.close();
      return seen;
    }
  }
}

describe('snapshots', () => {
  it('taking one: the host copies the disk; the record says ready with its size; list, get, patch; progress as SSE', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('computer.snapshot', () => ({ data: { bytes: 3 * 1048576 } }));
    const s = await take(w, computer.id, { comment: 'before the upgrade' });
    expect(s).toMatchObject({ computer_id: computer.id, tenant_id: w.tenant.orgId, workspace_id: w.tenant.workspaceId, comment: 'before the upgrade', status: 'ready', rootfs_size_bytes: 3 * 1048576, keep: false, error: null });
    expect(s.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(s.created_at).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect((await peer.take('computer.snapshot')).snapshot_id).toBe(s.id);

    expect((await list(w, computer.id)).map((x) => x.id)).toEqual([s.id]);
    expect((await expectJson<{ data: SnapshotView }>(await w.api(`/${computer.id}/snapshots/${s.id}`), 200)).data).toEqual(s);
    const patched = await expectJson<{ data: SnapshotView }>(await w.api(`/${computer.id}/snapshots/${s.id}`, { method: 'PATCH', body: { keep: true } }), 200);
    expect(patched.data).toMatchObject({ comment: 'before the upgrade', keep: true });

    const steps = await progressUntil(w, computer.id, s.id, (d) => d.step === 'done');
    expect(steps.map((d) => [d.operation, d.step, d.fraction, d.progress, d.status])).toEqual([
      ['create', 'copying', 0.1, 10, 'pending'],
      ['create', 'done', 1, 100, 'ready'],
    ]);
    expect(steps[0]).toMatchObject({ snapshot_id: s.id, computer_id: computer.id });

    // A stopped computer too.
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
    expect((await take(w, computer.id)).status).toBe('ready');
  });

  it('a slow copy answers pending and becomes ready later; a failed copy says why; the host is asked nothing it cannot do', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const held = peer.hold('computer.snapshot');
    const s = await take(w, computer.id);
    expect(s.status).toBe('pending');
    held.reply({ data: { bytes: 4096 } });
    await expect.poll(async () => (await list(w, computer.id))[0].status).toBe('ready');

    peer.onRequest('computer.snapshot', () => ({ error: { code: 'FAILED', message: 'fsfreeze: Operation not supported' } }));
    const failed = await take(w, computer.id);
    expect(failed).toMatchObject({ status: 'failed', error: 'fsfreeze: Operation not supported', rootfs_size_bytes: null });

    const provisioning = await w.api('', { method: 'POST', body: { name: 'new', template_type: 'miosa-desktop', region: w.host.region } });
    const fresh = await expectJson<ComputerView>(provisioning, 201);
    await expectError(await w.api(`/${fresh.id}/snapshots`, { method: 'POST', body: {} }), 409, 'INVALID_STATE_TRANSITION');
  });

  it(`a computer has at most ${MAX_SNAPSHOTS_PER_COMPUTER} snapshots`, async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    for (let i = 0; i < MAX_SNAPSHOTS_PER_COMPUTER; i++) await take(w, computer.id);
    const err = await expectError(await w.api(`/${computer.id}/snapshots`, { method: 'POST', body: {} }), 409, 'CONFLICT');
    expect(err.error.message).toMatch(/at most 20 snapshots/);
    expect((await expectJson<{ page: { total: number } }>(await w.api(`/${computer.id}/snapshots?page_size=5`), 200)).page.total).toBe(MAX_SNAPSHOTS_PER_COMPUTER);
  });

  it('restore in place: refused while running; on a stopped computer it is restoring, then stopped with the snapshot as its disk', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const s = await take(w, computer.id);
    await expectError(await w.api(`/${computer.id}/snapshots/${s.id}/restore`, { method: 'POST' }), 409, 'INVALID_STATE_TRANSITION');
    await expectJson(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);

    const held = peer.hold('computer.snapshot_restore');
    const pending = w.api(`/${computer.id}/snapshots/${s.id}/restore`, { method: 'POST' });
    expect((await held.request).snapshot_id).toBe(s.id);
    expect((await getComputer(w, computer.id)).status).toBe('restoring');
    expect((await list(w, computer.id))[0].status).toBe('restoring');
    // Not while restoring: start, another restore, deleting the snapshot.
    await expectError(await w.api(`/${computer.id}/start`, { method: 'POST' }), 409, 'INVALID_STATE_TRANSITION');
    await expectError(await w.api(`/${computer.id}/snapshots/${s.id}`, { method: 'DELETE' }), 409, 'CONFLICT');
    held.reply({ data: { state: 'stopped' } });
    const done = await expectJson<{ data: ComputerView; snapshot: SnapshotView }>(await pending, 200);
    expect(done.data).toMatchObject({ id: computer.id, status: 'stopped' });
    expect(done.snapshot).toMatchObject({ id: s.id, status: 'ready' });

    const steps = await progressUntil(w, computer.id, s.id, (d) => d.operation === 'restore' && d.step === 'done');
    expect(steps.filter((d) => d.operation === 'restore').map((d) => [d.step, d.status, d.target_computer_id])).toEqual([
      ['copying', 'restoring', computer.id],
      ['done', 'ready', computer.id],
    ]);

    // A host that fails it leaves the computer stopped, the snapshot ready, and says why.
    peer.onRequest('computer.snapshot_restore', () => ({ error: { code: 'FAILED', message: 'no snapshot on this host' } }));
    const err = await expectError(await w.api(`/${computer.id}/snapshots/${s.id}/restore`, { method: 'POST' }), 502, 'AGENT_ERROR');
    expect(err.error.message).toBe('no snapshot on this host');
    expect((await getComputer(w, computer.id)).status).toBe('stopped');
    expect((await list(w, computer.id))[0].status).toBe('ready');
  });

  it('a restore the agent was away for is finished when it attaches again', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    const s = await take(w, computer.id);
    peer.hold('computer.snapshot_restore');
    const pending = w.api(`/${computer.id}/snapshots/${s.id}/restore`, { method: 'POST' });
    await expect.poll(async () => (await getComputer(w, computer.id)).status).toBe('restoring');
    await peer.drop();
    await expectError(await pending, 502, 'AGENT_UNAVAILABLE');
    expect((await getComputer(w, computer.id)).status).toBe('restoring');
    const again = await w.host.dial(computer.id);
    await again.attach('stopped');
    expect((await again.take('computer.snapshot_restore')).snapshot_id).toBe(s.id);
    await waitForStatus(w, computer.id, 'stopped');
  });

  it('restore into a new computer: on the snapshot’s host, provisioned from the snapshot, answered {data, snapshot}', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w, { size: 'medium', metadata: { team: 'infra' } });
    const s = await take(w, computer.id);
    const r = await expectJson<{ data: ComputerView & { metadata: Record<string, string> }; snapshot: SnapshotView }>(
      await w.api(`/${computer.id}/restore/${s.id}`, { method: 'POST', body: {} }),
      201,
    );
    expect(r.snapshot).toMatchObject({ id: s.id, status: 'ready' });
    expect(r.data).toMatchObject({ name: 'dev box-restored', size: 'medium', status: 'provisioning', metadata: { team: 'infra' } });
    expect(r.data.id).not.toBe(computer.id);
    // The host is told to attach the new computer (after the first's attach order).
    while ((await w.host.take('computer.attach')).computer_id !== r.data.id);
    const copy: ComputerPeer = await w.host.dial(r.data.id);
    await copy.attach('absent');
    const provision = await copy.take('computer.provision');
    expect(provision).toMatchObject({ snapshot_id: s.id, spec: { id: r.data.id, size: 'medium' } });
    expect(provision.clone_from).toBeUndefined();
    await waitForStatus(w, r.data.id, 'running');
    const steps = await progressUntil(w, computer.id, s.id, (d) => d.operation === 'restore' && d.step === 'done');
    expect(steps.filter((d) => d.operation === 'restore').map((d) => [d.step, d.target_computer_id, d.computer_id])).toEqual([
      ['copying', r.data.id, r.data.id],
      ['done', r.data.id, r.data.id],
    ]);
    // Named by the caller; a snapshot that is not ready cannot be restored.
    const named = await expectJson<{ data: ComputerView }>(await w.api(`/${computer.id}/restore/${s.id}`, { method: 'POST', body: { name: 'from-snap' } }), 201);
    expect(named.data.name).toBe('from-snap');
    peer.onRequest('computer.snapshot', () => ({ error: { code: 'FAILED', message: 'broken' } }));
    const failed = await take(w, computer.id);
    await expectError(await w.api(`/${computer.id}/restore/${failed.id}`, { method: 'POST', body: {} }), 409, 'CONFLICT');
  });

  it('deleting a computer deletes its snapshots except kept ones, on the host too; a kept one can still be restored and deleted', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const gone = await take(w, computer.id);
    const kept = await take(w, computer.id, { keep: true });
    await expectJson(await w.api(`/${computer.id}`, { method: 'DELETE' }), 200);
    expect(await w.host.take('snapshot.delete')).toEqual({ type: 'snapshot.delete', snapshot_id: gone.id });
    await expectError(await w.api(`/${computer.id}`), 404, 'NOT_FOUND');
    // The kept snapshot is still listed under its computer's id, and in the organization's list.
    expect((await list(w, computer.id)).map((x) => x.id)).toEqual([kept.id]);
    await expectError(await w.api(`/${computer.id}/snapshots/${gone.id}`), 404, 'NOT_FOUND');
    const all = await expectJson<{ data: SnapshotView[] }>(await tenantFetch(w.tenant.apiKey, '/api/v1/snapshots'), 200);
    expect(all.data.map((x) => x.id)).toEqual([kept.id]);
    // Taking or restoring in place needs the computer.
    await expectError(await w.api(`/${computer.id}/snapshots`, { method: 'POST', body: {} }), 404, 'NOT_FOUND');
    await expectError(await w.api(`/${computer.id}/snapshots/${kept.id}/restore`, { method: 'POST' }), 404, 'NOT_FOUND');
    // Restoring into a new computer uses what the snapshot remembers of its computer.
    const r = await expectJson<{ data: ComputerView }>(await w.api(`/${computer.id}/restore/${kept.id}`, { method: 'POST', body: {} }), 201);
    expect(r.data).toMatchObject({ name: 'dev box-restored', size: 'small', status: 'provisioning' });
    await expectJson(await w.api(`/${computer.id}/snapshots/${kept.id}`, { method: 'DELETE' }), 200);
    expect(await w.host.take('snapshot.delete')).toEqual({ type: 'snapshot.delete', snapshot_id: kept.id });
    await expectError(await w.api(`/${computer.id}/snapshots`), 404, 'NOT_FOUND');
  });

  it('a host says hello and is told which snapshots to keep (not failed or deleted ones)', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const a = await take(w, computer.id);
    const b = await take(w, computer.id);
    peer.onRequest('computer.snapshot', () => ({ error: { code: 'FAILED', message: 'broken' } }));
    await take(w, computer.id);
    await expectJson(await w.api(`/${computer.id}/snapshots/${b.id}`, { method: 'DELETE' }), 200);
    const again = await connectHost({ id: w.host.id, key: w.host.key, region: w.host.region });
    expect(again.welcome.snapshots).toEqual([a.id]);
  });

  it("another organization's computer or snapshot is a 404; malformed ids are 400s", async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const s = await take(w, computer.id);
    const other = await world();
    for (const [method, path] of [
      ['GET', `/${computer.id}/snapshots`],
      ['GET', `/${computer.id}/snapshots/${s.id}`],
      ['DELETE', `/${computer.id}/snapshots/${s.id}`],
      ['POST', `/${computer.id}/restore/${s.id}`],
      ['POST', `/${computer.id}/snapshots/${s.id}/restore`],
      ['GET', `/${computer.id}/snapshots/${s.id}/events`],
    ] as const) {
      const err = await expectError(await other.api(path, { method, ...(method === 'POST' && { body: {} }) }), 404, 'NOT_FOUND');
      expect(err.error.message, `${method} ${path}`).toBe('computer not found');
    }
    expect((await expectJson<{ data: unknown[] }>(await tenantFetch(other.tenant.apiKey, '/api/v1/snapshots'), 200)).data).toEqual([]);
    // A snapshot of another computer of the same organization is not this computer's.
    const { computer: second } = await runningComputer(w);
    await expectError(await w.api(`/${second.id}/snapshots/${s.id}`), 404, 'NOT_FOUND');
    await expectError(await w.api(`/${computer.id}/snapshots/not-an-id`), 400, 'INVALID_ID');
    await expectError(await w.api(`/${computer.id}/snapshots/${crypto.randomUUID()}`), 404, 'NOT_FOUND');
  });

  it('snapshots cost credits by the hour for the disk they hold', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    peer.onRequest('computer.snapshot', () => ({ data: { bytes: 10 * 1024 ** 3 } }));
    await take(w, computer.id);
    const org = env.ORG_EVENTS.get(env.ORG_EVENTS.idFromName(w.tenant.orgId));
    const before = (await expectJson<{ data: { credits: number } }>(await operatorFetch(`/api/v1/admin/organizations/${w.tenant.orgId}`), 200)).data.credits;
    const charged = await runInDurableObject(org, async (obj, state) => {
      expect(await state.storage.getAlarm()).not.toBeNull();
      const since = (await state.storage.get<number>('snapshots_billed_at'))!;
      // @ts-expect-error -- the billing module is private to the object
      return (obj.billing as { run(now: number): Promise<{ charged: number; bytes: number }> }).run(since + SNAPSHOT_BILLING_MS);
    });
    // 10 GiB for an hour at the default 0.001 credits per GiB-hour.
    expect(charged).toEqual({ charged: expect.closeTo(0.01, 6), bytes: 10 * 1024 ** 3 });
    const after = (await expectJson<{ data: { credits: number } }>(await operatorFetch(`/api/v1/admin/organizations/${w.tenant.orgId}`), 200)).data.credits;
    expect(before - after).toBeCloseTo(0.01, 6);
    const tx = await env.DB.prepare(`SELECT amount, reason FROM credit_transactions WHERE org_id = ? AND reason = 'snapshot_storage'`).bind(w.tenant.orgId).all();
    expect(tx.results).toEqual([{ amount: expect.closeTo(-0.01, 6), reason: 'snapshot_storage' }]);
  });
});
