/**
 * A VM computer's own disk: a sparse ext4 image over the template's shared
 * read-only base. Its size is the disk quota; clones copy only the image
 * (consistent even while the source runs: its filesystem is frozen for the
 * copy); a move ships only the image, never the base.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { readMeta } from '../../host-agent/drivers/vm/disk.ts';
import { imagesDir } from '../../host-agent/drivers/vm/paths.ts';
import { Computers, DATA_DIR, TEST_DISK_MB, VM, newVmDriver, pathsOf, prepareVms, shIn } from './vm-fixture.ts';

let driver: VmDriver;
let computers: Computers;
let source: ComputerSpec;

beforeAll(async () => {
  driver = newVmDriver();
  await prepareVms(driver);
  computers = new Computers(() => driver);
  source = await computers.create({ ...VM, name: 'Disk Source' });
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

const blocksOf = (file: string) => fs.statSync(file).blocks * 512;
const GiB = 2 ** 30;

describe("a VM computer's disk", () => {
  it('is a sparse image of the quota size; filling it stops at the quota inside, and the computer lives on', async () => {
    const disk = pathsOf(driver, source.id).disk;
    expect(fs.statSync(disk).size).toBe(TEST_DISK_MB << 20);
    // A new disk is ext4 metadata only, nothing like its size.
    expect(blocksOf(disk)).toBeLessThan(64 << 20);
    const sh = shIn(driver, source.id);
    const fill = await sh(`df -m / | awk 'NR==2 {print $2}'; dd if=/dev/zero of=/home/user/fill bs=1M count=${TEST_DISK_MB * 2} 2>&1 | grep -v records`, 280);
    const [sizeMb] = fill.output.split('\n');
    expect(Number(sizeMb)).toBeGreaterThan(TEST_DISK_MB * 0.8);
    expect(Number(sizeMb)).toBeLessThanOrEqual(TEST_DISK_MB);
    expect(fill.output).toMatch(/No space left on device/);
    expect(fs.statSync(disk).size).toBe(TEST_DISK_MB << 20);
    await sh('rm -f /home/user/fill');
    // What the computer writes takes room on the host; what it deletes is given back (discard).
    const before = blocksOf(disk);
    await sh('head -c 64000000 /dev/urandom > /home/user/noise && sync');
    expect(blocksOf(disk) - before).toBeGreaterThan(60_000_000);
    await sh('rm /home/user/noise && sync');
    await expect.poll(() => blocksOf(disk) - before, { timeout: 30_000 }).toBeLessThan(16 << 20);
    expect((await sh('echo alive')).output).toBe('alive\n');
  });

  it('a clone of a running computer copies its disk, consistent, without stopping it; the two then diverge', async () => {
    const sh = shIn(driver, source.id);
    // Written and still in the page cache: the freeze flushes it before the copy.
    await sh('seq 1 100000 > /home/user/numbers && echo original > /home/user/who');
    const clone = await computers.create({ ...VM, name: 'Disk Clone' }, source.id);
    const inClone = shIn(driver, clone.id);
    expect((await inClone('md5sum < /home/user/numbers; cat /home/user/who')).output).toBe((await sh('md5sum < /home/user/numbers; cat /home/user/who')).output);
    await inClone('echo clone > /home/user/who');
    // The source was thawed: it writes, and keeps its own content.
    expect((await sh('echo still-writable > /home/user/after && cat /home/user/who')).output).toBe('original\n');
    expect((await inClone('cat /home/user/who; test -e /home/user/after && echo leaked || echo separate')).output).toBe('clone\nseparate\n');
    // The clone's own image holds only what the source had written, not the template.
    expect(blocksOf(pathsOf(driver, clone.id).disk)).toBeLessThan(128 << 20);
    await driver.destroy(clone.id);
  });

  it('moves between hosts as its image alone, and only onto the template it was made on', async () => {
    await shIn(driver, source.id)('echo moved-data > /home/user/moved');
    await driver.stop(source.id);
    const exported = await driver.exportDisk(source.id);
    const archive: Buffer[] = [];
    exported.stream.on('data', (d: Buffer) => archive.push(d));
    await exported.done;
    const bytes = Buffer.concat(archive);
    const base = fs.readdirSync(imagesDir(DATA_DIR)).find((f) => f.startsWith('base-'))!;
    // Sparse in the archive too: far below the base image, and below the quota.
    expect(bytes.length).toBeLessThan(fs.statSync(path.join(imagesDir(DATA_DIR), base)).blocks * 512);
    expect(bytes.length).toBeLessThan(TEST_DISK_MB << 20);

    // Another host: its own data dir (sharing only the template and images, as hosts of one recipe do).
    const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hangar-vm-other-'));
    const other = newVmDriver(otherDir);
    try {
      const target = await other.importDisk(source, () => undefined);
      const feed = new PassThrough();
      feed.end(bytes);
      for await (const chunk of feed) await target.write(chunk as Buffer);
      await target.commit();
      expect(await other.state(source.id)).toBe('stopped');
      await other.start(source);
      expect((await shIn(other, source.id)('cat /home/user/moved')).output).toBe('moved-data\n');
      await other.destroy(source.id);

      // A disk made on a template this host does not have is refused, and nothing is left behind.
      const forged = bytes.toString('latin1').replace(/miosa-desktop-[0-9a-f]{16}/g, (m) => m.replace(/[0-9a-f]{16}$/, '0000000000000000'));
      const refused = await other.importDisk(source, () => undefined);
      await refused.write(Buffer.from(forged, 'latin1'));
      await expect(refused.commit()).rejects.toThrow(/no template miosa-desktop-0000000000000000/);
      expect(await other.list()).not.toContain(source.id);
    } finally {
      await other.close();
      fs.rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('grows to a larger disk_gb at the next start, file system and all, keeping its files; never shrinks; kept memory is dropped when it grows', async () => {
    // The source was stopped by the move above.
    const sh = shIn(driver, source.id);
    const disk = pathsOf(driver, source.id).disk;
    const dfBytes = async () => Number((await sh('df -B1 --output=size / | tail -1')).output);
    await driver.start({ ...source, disk_gb: 2 });
    expect(fs.statSync(disk).size).toBe(2 * GiB);
    expect(readMeta(pathsOf(driver, source.id))!.disk_mb).toBe(2048);
    expect(await dfBytes()).toBeGreaterThan(1.8 * GiB);
    expect((await sh('cat /home/user/moved')).output).toBe('moved-data\n');

    // A smaller quota later changes nothing, and memory kept by a suspend is resumed as usual.
    await driver.suspend(source.id);
    await driver.start({ ...source, disk_gb: 1 });
    expect(driver.vmInfo(source.id)?.resumed).toBe(true);
    expect(fs.statSync(disk).size).toBe(2 * GiB);
    expect(await dfBytes()).toBeGreaterThan(1.8 * GiB);

    // A grown disk cannot be resumed on with memory of the smaller one: the VM boots.
    await driver.suspend(source.id);
    await driver.start({ ...source, disk_gb: 3 });
    expect(driver.vmInfo(source.id)?.resumed).toBeUndefined();
    expect(fs.existsSync(pathsOf(driver, source.id).memory)).toBe(false);
    expect(await dfBytes()).toBeGreaterThan(2.7 * GiB);
    expect((await sh('cat /home/user/moved')).output).toBe('moved-data\n');
  });
});
