/**
 * The cluster's object: members from hosts' reports, least-busy picks with
 * requests counted in flight, a failed request taking its member out until a
 * healthy report, reports kept across the object's eviction.
 */
import { env, evictDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';

const ready = (port: number, extra: object = {}) => ({ cluster_id: 'c', model: 'hangar-tiny', state: 'ready' as const, port, managed: true, slots: 1, busy: 0, queued: 0, ...extra });

function cluster(name: string) {
  return env.CLUSTER.get(env.CLUSTER.idFromName(name));
}

describe('ClusterObject', () => {
  it('is provisioning until a member reports ready, then active', async () => {
    const c = cluster('provisioning');
    await c.configure({ id: 'c', model: 'hangar-tiny', host_ids: ['h1', 'h2'] });
    expect((await c.state()).status).toBe('provisioning');
    expect(await c.pick([])).toBeNull();
    await c.report('h1', ready(9001));
    const s = await c.state();
    expect(s.status).toBe('active');
    expect(s.members.map((m) => [m.host_id, m.in_rotation])).toEqual([['h1', true], ['h2', false]]);
  });

  it('spreads requests in flight over the members and counts them until done', async () => {
    const c = cluster('spread');
    await c.configure({ id: 'c', model: 'hangar-tiny', host_ids: ['h1', 'h2'] });
    await c.report('h1', ready(9001));
    await c.report('h2', ready(9002));
    const a = (await c.pick([]))!;
    const b = (await c.pick([]))!;
    expect([a.host_id, b.host_id].sort()).toEqual(['h1', 'h2']);
    expect((await c.state()).members.map((m) => m.inflight)).toEqual([1, 1]);
    await c.done(a.lease, null);
    expect((await c.pick([]))!.host_id).toBe(a.host_id);
    expect(await c.pick(['h1', 'h2'])).toBeNull();
  });

  it('takes a member whose request failed out of rotation until its host reports it healthy', async () => {
    const c = cluster('failover');
    await c.configure({ id: 'c', model: 'hangar-tiny', host_ids: ['h1', 'h2'] });
    await c.report('h1', ready(9001));
    await c.report('h2', ready(9002));
    const p = (await c.pick([]))!;
    await c.done(p.lease, 'connection refused');
    for (let i = 0; i < 3; i++) {
      const q = (await c.pick([]))!;
      expect(q.host_id).not.toBe(p.host_id);
      await c.done(q.lease, null);
    }
    expect((await c.state()).members.find((m) => m.host_id === p.host_id)).toMatchObject({ in_rotation: false, error: 'connection refused' });
    await c.report(p.host_id, ready(9003));
    expect((await c.state()).members.every((m) => m.in_rotation)).toBe(true);
  });

  it('takes a member whose host went away out of rotation, and shows why', async () => {
    const c = cluster('offline');
    await c.configure({ id: 'c', model: 'hangar-tiny', host_ids: ['h1'] });
    await c.report('h1', ready(9001));
    await c.report('h1', { state: 'offline', error: 'the host agent disconnected' });
    expect(await c.state()).toMatchObject({ status: 'error', members: [{ state: 'offline', error: 'the host agent disconnected', in_rotation: false }] });
  });

  it('ignores reports of hosts that are not members, and forgets members taken out', async () => {
    const c = cluster('members');
    await c.configure({ id: 'c', model: 'hangar-tiny', host_ids: ['h1', 'h2'] });
    await c.report('intruder', ready(9001));
    await c.configure({ id: 'c', model: 'hangar-tiny', host_ids: ['h2'] });
    expect((await c.state()).members.map((m) => m.host_id)).toEqual(['h2']);
  });

  it('keeps its members\' reports when evicted', async () => {
    const id = env.CLUSTER.idFromName('evicted');
    const c = env.CLUSTER.get(id);
    await c.configure({ id: 'c', model: 'hangar-tiny', host_ids: ['h1'] });
    await c.report('h1', ready(9001));
    await evictDurableObject(c);
    const again = env.CLUSTER.get(id);
    expect((await again.pick([]))!).toMatchObject({ host_id: 'h1', port: 9001 });
  });
});
