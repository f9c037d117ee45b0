/**
 * Shared setup of the VM driver tests: a driver on the same stable data dir
 * as the sandbox tests (its VM files live apart, under vm/), the images
 * shared with every test agent, small disks (disk_gb 1 in every test spec)
 * and a small memory size so a loaded host is not pressed for RAM.
 * Software-emulated VMs use a core each while they work: files keep one or
 * two running and destroy them after.
 */
import type { ComputerSpec } from '../../schema/protocol.ts';
import { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { vmPaths, type VmPaths } from '../../host-agent/drivers/vm/paths.ts';
import { useSharedTemplates } from '../shared-template.ts';
import { Computers, DATA_DIR, newSpec } from './sandbox-fixture.ts';

export { Computers, DATA_DIR };

/** A disk quota small enough to fill in a test (test specs ask for it as disk_gb). */
export const TEST_DISK_GB = 1;
export const TEST_DISK_MB = TEST_DISK_GB * 1024;

export function newVmDriver(dataDir = DATA_DIR): VmDriver {
  useSharedTemplates(dataDir);
  return new VmDriver({ dataDir });
}

/** Kernel, images and the accelerator probe (minutes the first time, seconds after). */
export async function prepareVms(driver: VmDriver): Promise<void> {
  await driver.prepare((p) => {
    if (p.fraction === 0 || p.fraction === 1 || /^VMs run on/.test(p.message)) console.log(`[${p.phase}] ${p.message}`);
  });
}

/** What VM test computers differ in from the shared test spec: smaller memory and disk, and made as VMs. */
export const VM: Partial<ComputerSpec> = { memory_mb: 1024, disk_gb: TEST_DISK_GB, isolation: 'vm' };

export function vmSpec(overrides: Partial<ComputerSpec> = {}): ComputerSpec {
  return newSpec({ ...VM, ...overrides });
}

export const pathsOf = (driver: VmDriver, id: string): VmPaths => vmPaths(driver.dataDirectory, id);

/** Runs a shell command in a VM computer as `user` (or root). */
export function shIn(driver: VmDriver, id: string) {
  return (command: string, timeout_s = 120) => driver.exec(id, { command, timeout_s, max_output_bytes: 4 << 20 });
}
