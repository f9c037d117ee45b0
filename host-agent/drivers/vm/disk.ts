/**
 * A VM computer's own disk: `disk.img`, a sparse ext4 image whose size is the
 * computer's disk quota, holding `upper/` and `work/` — the overlay's upper
 * and work dirs over the template's read-only base image. The VM's init
 * mounts it and assembles the root; the base is never copied, so creating a
 * disk writes a few megabytes of ext4 metadata and cloning copies only what
 * the source computer changed (cp skips holes, and reflinks where the
 * filesystem can). Disks are made in a temp dir renamed into place, so a
 * crash never leaves a half-made computer that list() would report.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { copyImage, type Freeze } from '../disk-quota.ts';
import { DriverError } from '../driver.ts';
import { runCommand } from '../sandbox/run-command.ts';
import { vmComputersDir, vmPaths, type VmPaths } from './paths.ts';
import { readJsonFile, writeJsonFile } from '../json-file.ts';

export interface VmMeta {
  id: string;
  name: string;
  hostname: string;
  /** The template root this disk was made on (the sandbox driver's lower dir; the base image is made from it). */
  template_dir: string;
  vcpus: number;
  memory_mb: number;
  /** The size of disk.img: the computer's disk quota. */
  disk_mb: number;
  /** selected_apps already installed on this disk. */
  apps_installed: string[];
  created_at: string;
}

export function readMeta(paths: VmPaths): VmMeta | null {
  return readJsonFile<VmMeta>(paths.meta);
}

export function writeMeta(paths: VmPaths, meta: VmMeta): void {
  writeJsonFile(paths.meta, meta, 2);
}

/**
 * Creates the disk of `meta.id`: empty, or a copy of the disk image `source.image` (another
 * computer's, a snapshot's or a warm image's; `freeze` is for a running source).
 */
export async function createDisk(dataDir: string, meta: VmMeta, source?: { image: string; freeze?: Freeze }): Promise<VmPaths> {
  const parent = vmComputersDir(dataDir);
  fs.mkdirSync(parent, { recursive: true });
  const tmp = path.join(parent, `.${meta.id}.tmp-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(tmp, { mode: 0o700 });
  try {
    const image = path.join(tmp, 'disk.img');
    if (source) await copyImage(source.image, image, { freeze: source.freeze });
    else await makeEmptyDisk(image, meta.disk_mb, tmp);
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
    fs.renameSync(tmp, vmPaths(dataDir, meta.id).dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (err instanceof DriverError) throw err;
    throw new DriverError('FAILED', `cannot create the disk of ${meta.id}: ${(err as Error).message}`);
  }
  return vmPaths(dataDir, meta.id);
}

/** A sparse ext4 image of `sizeMb` with empty upper/ and work/ dirs. */
export async function makeEmptyDisk(image: string, sizeMb: number, scratch: string): Promise<void> {
  const skeleton = path.join(scratch, 'skeleton');
  fs.mkdirSync(path.join(skeleton, 'upper'), { recursive: true, mode: 0o755 });
  fs.mkdirSync(path.join(skeleton, 'work'), { mode: 0o755 });
  fs.closeSync(fs.openSync(image, 'w'));
  fs.truncateSync(image, sizeMb * 1024 * 1024);
  try {
    // Nothing reserved for root: the quota is the user's. Inode tables and journal are left
    // unwritten (lazy init; the VM mounts with noinit_itable), so the image stays sparse.
    await runCommand('mkfs.ext4', [
      '-q', '-F', '-m', '0', '-L', 'hangar-disk',
      '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0',
      '-d', skeleton, image,
    ], { timeoutMs: 120_000 });
  } finally {
    fs.rmSync(skeleton, { recursive: true, force: true });
  }
}

export function destroyDisk(paths: VmPaths): void {
  fs.rmSync(paths.dir, { recursive: true, force: true });
}

/** Ids of every VM computer with a disk. */
export function listDisks(dataDir: string): string[] {
  const dir = vmComputersDir(dataDir);
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.') && fs.existsSync(path.join(dir, e.name, 'meta.json')))
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/** Removes temp dirs of disk creations interrupted long ago (a recent one may still be copying). */
export function removeAbandonedDisks(dataDir: string, olderThanMs = 3600_000): void {
  const dir = vmComputersDir(dataDir);
  try {
    for (const name of fs.readdirSync(dir)) {
      if (!/^\..+\.tmp-[0-9a-f]+$/.test(name)) continue;
      const full = path.join(dir, name);
      if (Date.now() - fs.statSync(full).mtimeMs > olderThanMs) fs.rmSync(full, { recursive: true, force: true });
    }
  } catch {
    // no computers yet
  }
}

/** Bytes the disk image really occupies on the host (a sparse image grows as the computer writes). */
export function diskUsedBytes(paths: VmPaths): number {
  try {
    return fs.statSync(paths.disk).blocks * 512;
  } catch {
    return 0;
  }
}
