/**
 * Snapshots of VM computers: a copy of the VM's disk image (its file system
 * frozen for the copy while it runs) and the meta a computer made of it
 * needs, kept under vm/snapshots/ apart from the sandbox's. Restored in place
 * onto a stopped computer, or made into a new computer; listed and deleted.
 * The disk only: a VM's memory is never part of a snapshot.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { DriverRouter } from '../../host-agent/drivers/router.ts';
import { removeStraySnapshots, STRAY_GRACE_MS } from '../../host-agent/handlers/snapshots.ts';
import { snapshotsDir } from '../../host-agent/drivers/sandbox/paths.ts';
import { vmSnapshotsDir } from '../../host-agent/drivers/vm/paths.ts';
import type { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { Computers, VM, newVmDriver, pathsOf, prepareVms, shIn, vmSpec } from './vm-fixture.ts';

let driver: VmDriver;
let computers: Computers;
let spec: ComputerSpec;
const name = `vm-snap-${process.pid}`;
const GiB = 2 ** 30;

beforeAll(async () => {
  driver = newVmDriver();
  await prepareVms(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ ...VM, name: 'Snapshot Source' });
});

afterAll(async () => {
  await driver?.deleteSnapshot(name).catch(() => undefined);
  await computers?.destroyAll();
  await driver?.close();
});

const image = () => path.join(vmSnapshotsDir(driver.dataDirectory), `${name}.img`);

describe('snapshots of a VM computer', () => {
  it('a snapshot of a running VM is its disk as it was; restored in place onto the stopped computer, the computer has it back', async () => {
    const sh = shIn(driver, spec.id);
    // Still in the guest's page cache when the snapshot is taken: the freeze flushes it.
    await sh('echo before > /home/user/state && seq 1 50000 > /home/user/numbers');
    const { bytes } = await driver.snapshotDisk(spec.id, name);
    expect(bytes).toBeGreaterThan(0);
    expect(await driver.state(spec.id)).toBe('running');
    expect(JSON.parse(fs.readFileSync(image().replace(/\.img$/, '.json'), 'utf8'))).toMatchObject({ computer_id: spec.id, disk_mb: 1024, apps_installed: [] });
    expect(fs.statSync(image()).size).toBe(GiB);
    // The running VM was thawed: it writes on.
    await sh('echo after > /home/user/state && echo new > /home/user/added');
    expect(await driver.listSnapshots()).toContainEqual({ name, created_ms: expect.any(Number) });

    // Only onto a stopped computer.
    await expect(driver.restoreDisk(spec.id, name)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    // Kept memory would be of the disk being replaced: it goes too.
    await driver.suspend(spec.id);
    await driver.restoreDisk(spec.id, name);
    expect(fs.existsSync(pathsOf(driver, spec.id).memory)).toBe(false);
    await driver.start(spec);
    expect(driver.vmInfo(spec.id)?.resumed).toBeUndefined();
    expect((await sh('cat /home/user/state; wc -l < /home/user/numbers; test -e /home/user/added && echo added || echo absent')).output).toBe('before\n50000\nabsent\n');
  });

  it('a new computer made from the snapshot has its files; a larger quota grows it', async () => {
    const copy = vmSpec({ name: 'From Snapshot', disk_gb: 2 });
    try {
      await driver.provision(copy, undefined, () => undefined, name);
      const [state, df] = (await shIn(driver, copy.id)('cat /home/user/state; df -B1 --output=size / | tail -1')).output.split('\n');
      expect(state).toBe('before');
      expect(Number(df)).toBeGreaterThan(1.8 * GiB);
    } finally {
      await driver.destroy(copy.id);
    }
  });

  it('refuses bad names and unknown snapshots', async () => {
    await expect(driver.snapshotDisk(spec.id, '../escape')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(driver.restoreDisk(spec.id, '../escape')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(driver.deleteSnapshot('a/b')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(driver.snapshotDisk(spec.id, name)).rejects.toMatchObject({ code: 'BAD_REQUEST' }); // exists
    await driver.stop(spec.id);
    await expect(driver.restoreDisk(spec.id, 'no-such-snapshot')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const never = vmSpec();
    await expect(driver.provision(never, undefined, () => undefined, 'no-such-snapshot')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(driver.provision(never, undefined, () => undefined, '../escape')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(await driver.list()).not.toContain(never.id);
  });

  it("beside the sandbox's, on one host: each driver lists and removes only its own, and stray removal keeps what the server keeps", async () => {
    const sandbox = new SandboxDriver({ dataDir: driver.dataDirectory });
    const router = new DriverRouter([sandbox, driver]);
    // A sandbox snapshot's files, as that driver leaves them (its image is not read here).
    const other = `sandbox-snap-${process.pid}`;
    // Made here only if missing, and removed after: a sandbox's disks/ must be empty when its disk pool is first set up.
    const made = fs.mkdirSync(snapshotsDir(driver.dataDirectory), { recursive: true });
    fs.writeFileSync(path.join(snapshotsDir(driver.dataDirectory), `${other}.img`), '');
    try {
      expect((await driver.listSnapshots()).map((s) => s.name)).not.toContain(other);
      const all = (await router.listSnapshots()).map((s) => s.name);
      expect(all).toEqual(expect.arrayContaining([name, other]));
      // The server keeps every one but the sandbox's: only that one goes, the VM's stays.
      const later = Date.now() + STRAY_GRACE_MS + 60_000;
      expect(await removeStraySnapshots(router, all.filter((n) => n !== other), () => {}, later)).toEqual([other]);
      expect(fs.existsSync(path.join(snapshotsDir(driver.dataDirectory), `${other}.img`))).toBe(false);
      expect(fs.existsSync(image())).toBe(true);
    } finally {
      fs.rmSync(path.join(snapshotsDir(driver.dataDirectory), `${other}.img`), { force: true });
      if (made) fs.rmSync(made, { recursive: true, force: true });
      await sandbox.close();
    }
    // Deleted: gone from the list and the disk.
    await driver.deleteSnapshot(name);
    expect(fs.existsSync(image())).toBe(false);
    expect((await driver.listSnapshots()).map((s) => s.name)).not.toContain(name);
    await driver.deleteSnapshot(name); // gone already is fine
  });
});
