/**
 * At each welcome the agent removes the snapshots the server does not keep,
 * but never one made in the last minutes (it may be one the server recorded
 * after it listed them for the welcome).
 */
import { describe, expect, it } from 'vitest';
import { STRAY_GRACE_MS, removeStraySnapshots, takeSnapshot } from '../../host-agent/handlers/snapshots.ts';
import type { ComputerDriver } from '../../host-agent/drivers/driver.ts';

function fakeDriver(snapshots: { name: string; created_ms: number }[]): { driver: ComputerDriver; deleted: string[] } {
  const deleted: string[] = [];
  const driver = {
    name: 'fake',
    listSnapshots: async () => snapshots,
    deleteSnapshot: async (name: string) => void deleted.push(name),
  } as unknown as ComputerDriver;
  return { driver, deleted };
}

describe('stray snapshots', () => {
  it('removes old snapshots the server does not keep, and nothing else', async () => {
    const now = 1_800_000_000_000;
    const old = now - STRAY_GRACE_MS - 1;
    const { driver, deleted } = fakeDriver([
      { name: 'kept', created_ms: old },
      { name: 'stray', created_ms: old },
      { name: 'just-made', created_ms: now - 1000 },
    ]);
    const logs: string[] = [];
    expect(await removeStraySnapshots(driver, ['kept'], (l) => logs.push(l), now)).toEqual(['stray']);
    expect(deleted).toEqual(['stray']);
    expect(logs).toEqual(['snapshot stray is not kept by the server; removing it from this host']);
  });

  it('a driver without snapshots removes nothing, and refuses to take one with a reason', async () => {
    const driver = { name: 'fake' } as unknown as ComputerDriver;
    expect(await removeStraySnapshots(driver, [], () => {})).toEqual([]);
    await expect(takeSnapshot(driver, 'c', 's')).rejects.toMatchObject({ code: 'FAILED', message: "this host's fake driver keeps no snapshots" });
  });
});
