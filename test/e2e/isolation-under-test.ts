/**
 * The end-to-end suite runs against either driver: HANGAR_E2E_ISOLATION=vm
 * makes every computer the suite creates a microVM (the Worker's
 * DEFAULT_ISOLATION), as `npm run test:e2e:vm` does. The few tests that look
 * at the host itself (its limits, its processes, its disks) ask here.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { Isolation } from '../../schema/isolation.ts';
import type { ComputerDriver } from '../../host-agent/drivers/driver.ts';
import { DriverRouter } from '../../host-agent/drivers/router.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { ComputerCgroup, detectCgroups } from '../../host-agent/drivers/sandbox/cgroups.ts';
import { computerPaths, snapshotsDir } from '../../host-agent/drivers/sandbox/paths.ts';
import { readMeta } from '../../host-agent/drivers/vm/disk.ts';
import { vmPaths, vmSnapshotsDir } from '../../host-agent/drivers/vm/paths.ts';
import { isAlive, readState } from '../../host-agent/drivers/vm/qemu.ts';
import { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';

export const ISOLATION: Isolation = process.env.HANGAR_E2E_ISOLATION === 'vm' ? 'vm' : 'sandbox';
/** Every test agent offers both, so a test may ask for the other isolation too. */
export const E2E_DRIVERS = ['sandbox', 'vm'];

const MiB = 1024 * 1024;

/** What the host gives a computer: its cgroup's limits (sandbox) or its VM's hardware (vm); null when it does not run. */
export function hostLimits(dataDir: string, id: string, isolation = ISOLATION): { memoryBytes: number; vcpus: number } | null {
  if (isolation === 'vm') {
    const state = readState(vmPaths(dataDir, id));
    return state && isAlive(state) ? { memoryBytes: state.memory_mb * MiB, vcpus: state.vcpus } : null;
  }
  const cgroup = new ComputerCgroup(detectCgroups(), id);
  if (!cgroup.exists()) return null;
  const l = cgroup.readLimits();
  return { memoryBytes: l.memoryBytes, vcpus: l.cpuQuotaUs / 100_000 };
}

/** The files a running VM's disks are on the host, by the serial the guest sees them under (hangar-base, hangar-disk, hangar-guest); null when it does not run. */
export function vmDriveFiles(dataDir: string, id: string): Record<string, string> | null {
  const state = readState(vmPaths(dataDir, id));
  if (!state || !isAlive(state)) return null;
  const files: Record<string, string> = {};
  const drives = new Map<string, string>();
  for (const arg of state.argv) {
    const opts = Object.fromEntries(arg.split(',').map((o) => o.split('=', 2) as [string, string]));
    if (opts.file && opts.id) drives.set(opts.id, opts.file);
    if (opts.drive && opts.serial) files[opts.serial] = drives.get(opts.drive) ?? '';
  }
  return files;
}

/** Whether a computer's disk is on a host. */
export function hasDisk(dataDir: string, id: string, isolation = ISOLATION): boolean {
  if (isolation === 'vm') return readMeta(vmPaths(dataDir, id)) !== null;
  return fs.existsSync(computerPaths(dataDir, id).image);
}

/** Where a host keeps the snapshots of computers of an isolation (each driver its own). */
export function snapshotDir(dataDir: string, isolation = ISOLATION): string {
  return isolation === 'vm' ? vmSnapshotsDir(dataDir) : snapshotsDir(dataDir);
}

/** Whether `inside` (a path in the computer) is among what the computer wrote to its disk on that host. */
export function wroteToDisk(dataDir: string, id: string, inside: string, isolation = ISOLATION): boolean {
  // Both drivers keep it in an ext4 image holding the overlay's upper dir (read here unmounted, as the computer is stopped).
  const image = isolation === 'vm' ? vmPaths(dataDir, id).disk : computerPaths(dataDir, id).image;
  const out = execFileSync('debugfs', ['-R', `stat /upper${inside}`, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return /Inode: \d+/.test(out);
}

/** Both drivers on a data dir, as a test agent has them. */
export function hostDrivers(dataDir: string): { driver: ComputerDriver; sandbox: SandboxDriver } {
  const sandbox = new SandboxDriver({ dataDir });
  return { driver: new DriverRouter([sandbox, new VmDriver({ dataDir })]), sandbox };
}

/** Removes whatever computers a run left on a data dir (they outlive their agent by design), then unmounts its disk pool if it has one. */
export async function destroyAllOn(dataDir: string): Promise<void> {
  const { driver, sandbox } = hostDrivers(dataDir);
  for (const id of await driver.list()) await driver.destroy(id).catch(() => undefined);
  await driver.close();
  await sandbox.releaseStorage();
}
