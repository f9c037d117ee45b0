/**
 * A computer's disk: its overlay upper dir over a template root. Creating one
 * is instant (empty upper), cloning copies the source's upper dir (reflinks
 * where the filesystem has them), destroying removes the directory. A disk is
 * assembled in a temp dir and renamed into place, so a crash never leaves a
 * half-made computer that list() would report.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import { computerPaths, computersDir, type ComputerPaths } from './paths.ts';
import { runCommand } from './run-command.ts';

export interface ComputerMeta {
  id: string;
  name: string;
  hostname: string;
  /** The template root this disk was made on; it must stay its lower dir forever. */
  template_dir: string;
  vcpus: number;
  memory_mb: number;
  /** selected_apps already installed on this disk. */
  apps_installed: string[];
  created_at: string;
}

export function readMeta(paths: ComputerPaths): ComputerMeta | null {
  try {
    return JSON.parse(fs.readFileSync(paths.meta, 'utf8')) as ComputerMeta;
  } catch {
    return null;
  }
}

export function writeMeta(paths: ComputerPaths, meta: ComputerMeta): void {
  const tmp = `${paths.meta}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(meta, null, 2) + '\n');
  fs.renameSync(tmp, paths.meta);
}

/**
 * Creates the disk of `meta.id`, empty or as a copy of `source`'s (which may be
 * running: its upper dir is read, never written).
 */
export async function createDisk(dataDir: string, meta: ComputerMeta, source?: ComputerPaths): Promise<ComputerPaths> {
  const paths = computerPaths(dataDir, meta.id);
  const parent = computersDir(dataDir);
  fs.mkdirSync(parent, { recursive: true });
  const tmp = path.join(parent, `.${meta.id}.tmp-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(tmp, { mode: 0o700 });
  try {
    if (source) {
      // -a keeps owners, modes, xattrs and overlay whiteouts (0:0 device nodes).
      await runCommand('cp', ['-a', '--reflink=auto', source.upper, path.join(tmp, 'upper')]);
    } else {
      fs.mkdirSync(path.join(tmp, 'upper'));
    }
    for (const d of ['work', 'mnt', 'run']) fs.mkdirSync(path.join(tmp, d));
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
    fs.renameSync(tmp, paths.dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (err instanceof DriverError) throw err;
    throw new DriverError('FAILED', `cannot create the disk of ${meta.id}: ${(err as Error).message}`);
  }
  return paths;
}

export function destroyDisk(paths: ComputerPaths): void {
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

/** Removes temp dirs of disk creations interrupted long ago (a recent one may still be copying). */
export function removeAbandonedDisks(dataDir: string, olderThanMs = 3600_000): void {
  try {
    for (const name of fs.readdirSync(computersDir(dataDir))) {
      if (!/^\..+\.tmp-[0-9a-f]+$/.test(name)) continue;
      const dir = path.join(computersDir(dataDir), name);
      if (Date.now() - fs.statSync(dir).mtimeMs > olderThanMs) fs.rmSync(dir, { recursive: true, force: true });
    }
  } catch {
    // no computers dir yet
  }
}
