/**
 * A computer on disk: its record (meta.json) and its disk image (storage.ts),
 * the overlay's upper layer over a template root. Creating one is instant (an
 * empty sparse image), cloning copies the source's image as a reflink,
 * destroying removes both. A computer is assembled in a temp dir and renamed
 * into place, so a crash never leaves a half-made computer that list() would
 * report (an image without a record is removed as abandoned).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import { computerPaths, computersDir, disksDir, type ComputerPaths } from './paths.ts';
import { runCommand } from './run-command.ts';
import type { DiskStorage } from './storage.ts';
import { readJsonFile, writeJsonFile } from '../json-file.ts';

export interface ComputerMeta {
  id: string;
  name: string;
  hostname: string;
  /** The template root this disk was made on; it must stay its lower dir forever. */
  template_dir: string;
  vcpus: number;
  memory_mb: number;
  /** The disk's size (its quota). Absent on disks of the old layout, until their conversion. */
  disk_gb?: number;
  /** selected_apps already installed on this disk. */
  apps_installed: string[];
  created_at: string;
}

export function readMeta(paths: ComputerPaths): ComputerMeta | null {
  return readJsonFile<ComputerMeta>(paths.meta);
}

export function writeMeta(paths: ComputerPaths, meta: ComputerMeta): void {
  writeJsonFile(paths.meta, meta, 2);
}

/**
 * Creates the computer `meta.id` with an empty disk of meta.disk_gb, or with a
 * copy of another disk made by `copyInto` (which writes the image it is given).
 */
export async function createDisk(
  storage: DiskStorage,
  meta: ComputerMeta & { disk_gb: number },
  copyInto?: (image: string) => Promise<void>,
): Promise<ComputerPaths> {
  const paths = computerPaths(storage.dataDir, meta.id);
  const parent = computersDir(storage.dataDir);
  fs.mkdirSync(parent, { recursive: true });
  await storage.ensure();
  const tmp = path.join(parent, `.${meta.id}.tmp-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(tmp, { mode: 0o700 });
  try {
    if (copyInto) await copyInto(paths.image);
    else await storage.create(paths.image, meta.disk_gb);
    fs.mkdirSync(path.join(tmp, 'run'));
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
    fs.renameSync(tmp, paths.dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.rmSync(paths.image, { force: true });
    if (err instanceof DriverError) throw err;
    throw new DriverError('FAILED', `cannot create the disk of ${meta.id}: ${(err as Error).message}`);
  }
  return paths;
}

export function destroyDisk(paths: ComputerPaths): void {
  fs.rmSync(paths.image, { force: true });
  fs.rmSync(paths.dir, { recursive: true, force: true });
}

/** Ids of every computer with a disk. */
export function listDisks(dataDir: string): string[] {
  try {
    return fs
      .readdirSync(computersDir(dataDir), { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.') && fs.existsSync(path.join(computersDir(dataDir), e.name, 'meta.json')))
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

/**
 * Removes what interrupted creations left long ago (a recent one may still be
 * copying): temp dirs, temp images, and images no computer record owns.
 */
export function removeAbandonedDisks(dataDir: string, olderThanMs = 3600_000): void {
  const old = (p: string) => Date.now() - (fs.statSync(p, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > olderThanMs;
  for (const name of readdirOr(computersDir(dataDir))) {
    const dir = path.join(computersDir(dataDir), name);
    if (/^\..+\.tmp-[0-9a-f]+$/.test(name) && old(dir)) fs.rmSync(dir, { recursive: true, force: true });
  }
  for (const name of readdirOr(disksDir(dataDir))) {
    const file = path.join(disksDir(dataDir), name);
    const owner = /^([A-Za-z0-9][A-Za-z0-9_-]*)\.img(\.tmp|\.converting)?$/.exec(name);
    const importing = /^\.import-/.test(name);
    if (!(owner || importing) || !old(file)) continue;
    if (owner && !owner[2] && fs.existsSync(path.join(computersDir(dataDir), owner[1], 'meta.json'))) continue;
    fs.rmSync(file, { recursive: true, force: true });
  }
}

function readdirOr(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
