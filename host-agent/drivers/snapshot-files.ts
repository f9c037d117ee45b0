/**
 * A host's snapshots, kept by each driver in a directory of its own (the
 * sandbox's `disks/snapshots/`, the VM's `vm/snapshots/`): `<name>.img`, a
 * copy of a computer's disk image, and `<name>.json` beside it with what a
 * computer made of it needs and the image cannot say: the template root its
 * overlay sits on, the apps already installed on it, the disk's size.
 * The image is written first and the meta last, so a snapshot without its
 * meta is one whose taking was cut short (or one of an older agent: it is
 * restored onto the computer's own template).
 * Each driver lists and removes only what is in its own directory, so the
 * snapshots of one driver are never taken for strays by the other.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from './driver.ts';

export interface SnapshotMeta {
  computer_id: string;
  template_dir: string;
  apps_installed: string[];
  /** The disk's size when it was taken (the sandbox's unit; VM snapshots keep disk_mb). */
  disk_gb?: number;
  disk_mb?: number;
  created_at: string;
}

const metaPath = (dir: string, name: string) => path.join(dir, `${name}.json`);

export const snapshotImagePath = (dir: string, name: string) => path.join(dir, `${name}.img`);

export function writeSnapshotMeta(dir: string, name: string, meta: SnapshotMeta): void {
  const file = metaPath(dir, name);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(meta, null, 2) + '\n');
  fs.renameSync(`${file}.tmp`, file);
}

export function readSnapshotMeta(dir: string, name: string): SnapshotMeta | null {
  try {
    const m = JSON.parse(fs.readFileSync(metaPath(dir, name), 'utf8')) as Partial<SnapshotMeta>;
    if (typeof m.template_dir !== 'string' || !Array.isArray(m.apps_installed)) return null;
    const size = (x: unknown) => (typeof x === 'number' ? x : undefined);
    return {
      computer_id: String(m.computer_id ?? ''), template_dir: m.template_dir, apps_installed: m.apps_installed.map(String),
      disk_gb: size(m.disk_gb), disk_mb: size(m.disk_mb), created_at: String(m.created_at ?? ''),
    };
  } catch {
    return null;
  }
}

/**
 * Takes snapshot `name` in `dir`: `copy` writes the image at the path it is given, then the meta
 * goes beside it, last. A name in use is refused; on failure nothing of the snapshot is left.
 * Answers its size on the host's disk.
 */
export async function takeSnapshot(dir: string, name: string, copy: (image: string) => Promise<void>, meta: Omit<SnapshotMeta, 'created_at'>): Promise<{ bytes: number }> {
  const image = snapshotImagePath(dir, name);
  if (fs.existsSync(image)) throw new DriverError('BAD_REQUEST', `snapshot ${name} exists`);
  fs.mkdirSync(dir, { recursive: true });
  try {
    await copy(image);
    writeSnapshotMeta(dir, name, { ...meta, created_at: new Date().toISOString() });
  } catch (err) {
    removeSnapshotFiles(dir, name);
    throw err;
  }
  return { bytes: fs.statSync(image).blocks * 512 };
}

/** Every snapshot image in `dir`, with when it was made (its image's mtime: a reflink copy keeps none of its source's). */
export function listSnapshotFiles(dir: string): { name: string; created_ms: number }[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: { name: string; created_ms: number }[] = [];
  for (const file of names) {
    const m = /^([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.img(\.tmp)?$/.exec(file);
    if (!m) continue;
    const st = fs.statSync(path.join(dir, file), { throwIfNoEntry: false });
    if (!st) continue;
    // A copy cut short by a crash is listed too (by its name), so that it is removed like any stray.
    out.push({ name: m[1], created_ms: st.mtimeMs });
  }
  // One entry per name (an image and its leftover temp copy).
  return [...new Map(out.map((s) => [s.name, s])).values()];
}

/** Removes a snapshot's image, meta and any temp copy; gone already is fine. */
export function removeSnapshotFiles(dir: string, name: string): void {
  const image = snapshotImagePath(dir, name);
  for (const file of [image, `${image}.tmp`, metaPath(dir, name), `${metaPath(dir, name)}.tmp`]) fs.rmSync(file, { force: true });
}
