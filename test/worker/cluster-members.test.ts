/** The cluster's member table: who is in rotation, who takes the next request, what the cluster's status is. */
import { describe, expect, it } from 'vitest';
import { REPORT_STALE_MS, applyReport, clusterState, inRotation, newMember, pick, type Member } from '../../durable-objects/cluster/member-table.ts';

const ready = (id: string, extra: Partial<Member> = {}): Member => ({ ...applyReport(newMember(id), { state: 'ready', port: 9000, slots: 2 }, 1000), ...extra });

describe('cluster members', () => {
  it('picks the least busy member in rotation, and the least recently picked among equals', () => {
    const a = ready('a', { inflight: 1 });
    const b = ready('b', { busy: 2, inflight: 0 });
    const c = ready('c');
    expect(pick([a, b, c], 1000)!.host_id).toBe('c');
    expect(pick([ready('x', { picked_at: 5 }), ready('y', { picked_at: 3 })], 1000)!.host_id).toBe('y');
    expect(pick([a, b, c], 1000, new Set(['c']))!.host_id).toBe('a');
  });

  it('counts load per slot, so a bigger member takes more', () => {
    expect(pick([ready('small', { slots: 1, inflight: 1 }), ready('big', { slots: 4, inflight: 2 })], 1000)!.host_id).toBe('big');
  });

  it('leaves out members that are not ready, failed a request, or went quiet', () => {
    const failed = ready('f', { failed_at: 1000 });
    expect(inRotation(failed, 1000)).toBe(false);
    expect(inRotation(applyReport(failed, { state: 'ready', port: 9000 }, 1500), 1500)).toBe(true);
    expect(inRotation(applyReport(ready('u'), { state: 'unhealthy', port: 9000, error: 'down' }, 1500), 1500)).toBe(false);
    expect(inRotation(ready('q'), 1000 + REPORT_STALE_MS - 1)).toBe(true);
    expect(inRotation(ready('q'), 1000 + REPORT_STALE_MS)).toBe(false);
    expect(REPORT_STALE_MS).toBeLessThan(10_000);
    expect(pick([failed], 1000)).toBeNull();
  });

  it('is active while any member serves, provisioning while one starts, error otherwise', () => {
    expect(clusterState([ready('a'), newMember('b')], 1000)).toBe('active');
    expect(clusterState([newMember('b')], 1000)).toBe('provisioning');
    expect(clusterState([applyReport(newMember('c'), { state: 'error', port: 0, error: 'no model' }, 1000)], 1000)).toBe('error');
  });
});
