/**
 * Snapshots on this host (protocol 1.6): copies of a computer's disk made and
 * put back by the driver, removed when the server says so, and at each
 * welcome any the server no longer keeps.
 */
import type { LifecycleResult } from '../../schema/protocol.ts';
import { DriverError, type ComputerDriver } from '../drivers/driver.ts';
import type { Logger } from '../log.ts';

/**
 * A snapshot this recent is never taken for a stray: the server records a snapshot before it
 * asks for it, so only one made between a welcome's list and its reconciling could be missing.
 */
export const STRAY_GRACE_MS = 5 * 60_000;

function unsupported(driver: ComputerDriver): never {
  throw new DriverError('FAILED', `this host's ${driver.name} driver keeps no snapshots`);
}

export async function takeSnapshot(driver: ComputerDriver, id: string, snapshotId: string): Promise<{ bytes: number }> {
  if (!driver.snapshotDisk) unsupported(driver);
  return driver.snapshotDisk(id, snapshotId);
}

export async function restoreSnapshot(driver: ComputerDriver, id: string, snapshotId: string): Promise<LifecycleResult> {
  if (!driver.restoreDisk) unsupported(driver);
  await driver.restoreDisk(id, snapshotId);
  return { state: await driver.state(id) };
}

export async function deleteSnapshot(driver: ComputerDriver, snapshotId: string, log: Logger): Promise<void> {
  await driver.deleteSnapshot?.(snapshotId).catch((e: Error) => log(`removing snapshot ${snapshotId} failed: ${e.message}`));
}

/** Removes the snapshots on this host that the server does not keep (older than STRAY_GRACE_MS). */
export async function removeStraySnapshots(driver: ComputerDriver, keep: readonly string[], log: Logger, now = Date.now()): Promise<string[]> {
  if (!driver.listSnapshots || !driver.deleteSnapshot) return [];
  const kept = new Set(keep);
  const removed: string[] = [];
  for (const s of await driver.listSnapshots()) {
    if (kept.has(s.name) || now - s.created_ms < STRAY_GRACE_MS) continue;
    log(`snapshot ${s.name} is not kept by the server; removing it from this host`);
    await deleteSnapshot(driver, s.name, log);
    removed.push(s.name);
  }
  return removed;
}
