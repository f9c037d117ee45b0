/**
 * Shapes existing client code reads (issue 11, docs/compatibility.md):
 * metadata, visibility and ip_address on the computer object, PATCH of name
 * and metadata, auto-stop's `seconds`, start on a computer on its way to
 * running, the list's status filter, and which ids are 400s and which 404s.
 */
import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { createComputer, getComputer, runningComputer, stoppedComputer, waitForStatus, world, type ComputerView } from './computer-fixtures.ts';

useAgentPeers();

interface Shaped extends ComputerView {
  ip_address: string | null;
  metadata: Record<string, string>;
  visibility: string;
}

describe('metadata and visibility', () => {
  it('are kept from create, shown on GET and in lists, and PATCH replaces the metadata map', async () => {
    const w = await world();
    const c = await expectJson<Shaped>(
      await w.api('', { method: 'POST', body: { name: 'meta', template_type: 'miosa-desktop', region: w.host.region, metadata: { team: 'ml', 'run.id': '42' }, visibility: 'tenant' } }),
      201,
    );
    expect(c).toMatchObject({ metadata: { team: 'ml', 'run.id': '42' }, visibility: 'tenant', ip_address: null });
    expect(await getComputer(w, c.id)).toMatchObject({ metadata: { team: 'ml', 'run.id': '42' }, visibility: 'tenant' });

    const patched = await expectJson<Shaped & { data: Shaped }>(await w.api(`/${c.id}`, { method: 'PATCH', body: { name: 'renamed', metadata: { team: 'infra' } } }), 200);
    expect(patched).toMatchObject({ name: 'renamed', metadata: { team: 'infra' }, visibility: 'tenant' });
    expect(patched.data).toMatchObject({ name: 'renamed', metadata: { team: 'infra' } });
    // Fields not sent stay as they were.
    await expectJson(await w.api(`/${c.id}`, { method: 'PATCH', body: { agent_session_id: 'sess-1' } }), 200);
    const list = await expectJson<{ computers: Shaped[] }>(await w.api(''), 200);
    expect(list.computers[0]).toMatchObject({ id: c.id, name: 'renamed', agent_session_id: 'sess-1', metadata: { team: 'infra' }, visibility: 'tenant' });
    await expectJson(await w.api(`/${c.id}`, { method: 'PATCH', body: { metadata: {}, visibility: 'public' } }), 200);
    expect(await getComputer(w, c.id)).toMatchObject({ metadata: {}, visibility: 'public' });
  });

  it('default to an empty map and public; a clone carries them over', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    expect(computer).toMatchObject({ metadata: {}, visibility: 'public' });
    await expectJson(await w.api(`/${computer.id}`, { method: 'PATCH', body: { metadata: { origin: 'yes' }, visibility: 'key' } }), 200);
    const clone = await expectJson<Shaped>(await w.api(`/${computer.id}/clone`, { method: 'POST', body: {} }), 201);
    expect(clone).toMatchObject({ metadata: { origin: 'yes' }, visibility: 'key' });
  });

  it('bad metadata or visibility is a 400 naming the field, and changes nothing', async () => {
    const w = await world();
    const c = await createComputer(w, { metadata: { keep: 'me' } });
    const bad: unknown[] = [
      'a=b', ['x'], { 'has space': 'v' }, { '': 'v' }, { _lead: 'v' }, { __proto__x: 'v' }, { k: 1 }, { k: null }, { k: 'x'.repeat(256) },
      Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])),
    ];
    for (const metadata of bad) {
      const err = await expectError(await w.api(`/${c.id}`, { method: 'PATCH', body: { metadata } }), 400, 'VALIDATION_FAILED');
      expect(err.error.message, JSON.stringify(metadata).slice(0, 40)).toMatch(/^metadata/);
    }
    await expectError(await w.api('', { method: 'POST', body: { name: 'x', template_type: 'miosa-desktop', region: w.host.region, metadata: { 'a b': 'c' } } }), 400, 'VALIDATION_FAILED');
    for (const visibility of ['private', 'PUBLIC', '', 1]) {
      const err = await expectError(await w.api(`/${c.id}`, { method: 'PATCH', body: { visibility } }), 400, 'VALIDATION_FAILED');
      expect(err.error.message).toMatch(/^visibility/);
    }
    expect(await getComputer(w, c.id)).toMatchObject({ metadata: { keep: 'me' }, visibility: 'public' });
  });
});

describe('ip_address', () => {
  it('is null until a boot reports one, then shows the address the host reported', async () => {
    const w = await world();
    const c = await createComputer(w);
    expect((await getComputer(w, c.id)) as Shaped).toMatchObject({ ip_address: null });
    const peer = await w.host.dial(c.id);
    peer.onRequest('computer.provision', () => ({ data: { state: 'running', ip_address: '10.0.2.15' } }));
    await peer.attach('absent');
    expect((await waitForStatus(w, c.id, 'running')) as Shaped).toMatchObject({ ip_address: '10.0.2.15' });
    await expectJson(await w.api(`/${c.id}/stop`, { method: 'POST' }), 200);
    peer.onRequest('computer.start', () => ({ data: { state: 'running', ip_address: 'fd00::5' } }));
    expect(await expectJson<Shaped>(await w.api(`/${c.id}/start`, { method: 'POST' }), 200)).toMatchObject({ ip_address: 'fd00::5' });
  });
});

describe('PATCH auto-stop', () => {
  it('takes {seconds} as well as {auto_stop_seconds}; both at once must agree', async () => {
    const w = await world();
    const c = await createComputer(w);
    const path = `/${c.id}/auto-stop`;
    expect(await expectJson(await w.api(path, { method: 'PATCH', body: { seconds: 900 } }), 200)).toEqual({ auto_stop_seconds: 900, enabled: true });
    expect(await expectJson(await w.api(path), 200)).toEqual({ auto_stop_seconds: 900, enabled: true });
    expect(await expectJson(await w.api(path, { method: 'PATCH', body: { seconds: 60, auto_stop_seconds: 60 } }), 200)).toMatchObject({ auto_stop_seconds: 60 });
    expect(await expectJson(await w.api(path, { method: 'PATCH', body: { seconds: null } }), 200)).toEqual({ auto_stop_seconds: 0, enabled: false });
    const clash = await expectError(await w.api(path, { method: 'PATCH', body: { seconds: 60, auto_stop_seconds: 120 } }), 400, 'VALIDATION_FAILED');
    expect(clash.error.message).toMatch(/^seconds/);
    const negative = await expectError(await w.api(path, { method: 'PATCH', body: { seconds: -1 } }), 400, 'VALIDATION_FAILED');
    expect(negative.error.message).toMatch(/^seconds/);
    expect((await expectError(await w.api(path, { method: 'PATCH', body: {} }), 400, 'VALIDATION_FAILED')).error.message).toBe('auto_stop_seconds is required');
    expect((await getComputer(w, c.id)).auto_stop).toBe(0);
  });
});

describe('start on a computer that runs or is on its way', () => {
  it('answers 200 with the computer for running and provisioning, and asks the agent nothing', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const asked = peer.requests.length;
    const r = await expectJson<ComputerView & { data: ComputerView }>(await w.api(`/${computer.id}/start`, { method: 'POST' }), 200);
    expect(r).toMatchObject({ id: computer.id, status: 'running', data: { id: computer.id, status: 'running' } });
    expect(peer.requests.slice(asked)).toEqual([]);

    const created = await createComputer(w);
    expect(await expectJson(await w.api(`/${created.id}/start`, { method: 'POST' }), 200)).toMatchObject({ id: created.id, status: 'provisioning' });
  });

  it('answers 200 while a start is under way, and the one start completes', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    const held = peer.hold('computer.start');
    const first = w.api(`/${computer.id}/start`, { method: 'POST' });
    await held.request;
    expect(await expectJson(await w.api(`/${computer.id}/start`, { method: 'POST' }), 200)).toMatchObject({ status: 'starting' });
    held.reply({ data: { state: 'running' } });
    expect(await expectJson(await first, 200)).toMatchObject({ status: 'running' });
    expect(peer.requests.filter((r) => r.type === 'computer.start')).toHaveLength(1);
  });

  it('keeps the 409 for states it cannot start from (stopping, error)', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const held = peer.hold('computer.stop');
    const stopping = w.api(`/${computer.id}/stop`, { method: 'POST' });
    await held.request;
    const err = await expectError(await w.api(`/${computer.id}/start`, { method: 'POST' }), 409, 'INVALID_STATE_TRANSITION');
    expect(err.error.message).toBe('computer cannot be started from its current status');
    held.reply({ data: { state: 'stopped' } });
    await expectJson(await stopping, 200);
  });
});

describe('GET /computers?status=', () => {
  it('filters by one status or several, with `active` meaning running; an unknown status is a 400', async () => {
    const w = await world();
    const { computer: running } = await runningComputer(w, { name: 'r' });
    const { computer: stopped } = await stoppedComputer(w, { name: 's' });
    const provisioning = await createComputer(w, { name: 'p' });
    const ids = async (q: string) => (await expectJson<{ computers: ComputerView[]; total: number }>(await w.api(q), 200)).computers.map((c) => c.id).sort();
    expect(await ids('?status=running')).toEqual([running.id]);
    expect(await ids('?status=active')).toEqual([running.id]);
    expect(await ids('?status=stopped,provisioning')).toEqual([stopped.id, provisioning.id].sort());
    expect(await ids('?status=error')).toEqual([]);
    const page = await expectJson<{ total: number; page: { total: number } }>(await w.api('?status=running,stopped'), 200);
    expect([page.total, page.page.total]).toEqual([2, 2]);
    for (const q of ['?status=bogus', '?status=', '?status=running,,stopped', '?status=RUNNING']) {
      const err = await expectError(await w.api(q), 400, 'VALIDATION_FAILED');
      expect(err.error.message, q).toMatch(/^status: /);
    }
  });
});

describe('ids', () => {
  it('any id of the UUID text form that names nothing is a 404, whatever its version or case', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    expect((await getComputer(w, computer.id.toUpperCase())).id).toBe(computer.id);
    for (const id of ['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '0190c8e2-7a4b-7c3d-9e5f-1a2b3c4d5e6f', 'ABCDEF01-2345-0678-c9ab-cdef01234567']) {
      const err = await expectError(await w.api(`/${id}`), 404, 'NOT_FOUND');
      expect(err.error.message).toBe('computer not found');
      await expectError(await w.api(`/${id}/start`, { method: 'POST' }), 404, 'NOT_FOUND');
    }
    for (const id of ['not-a-uuid', computer.id.replaceAll('-', ''), `${computer.id}0`, `{${computer.id}}`, `${computer.id.slice(0, -1)}g`]) {
      await expectError(await w.api(`/${encodeURIComponent(id)}`), 400, 'INVALID_ID');
    }
  });
});
