/**
 * A sandbox host's snapshots: `disks/snapshots/<name>.img`, a reflink copy of
 * a computer's disk image (storage.ts), and `<name>.json` beside it with what
 * a computer made of it needs and the image cannot say: the template root its
 * overlay sits on, the apps already installed on it, the disk's size.
 * The image is written first and the meta last, so a snapshot without its
 * meta is one whose taking was cut short (or one of an older agent: it is
 * restored onto the computer's own template).
 */
import fs from 'node:fs';
import path from 'node:path';
import { snapshotsDir } from './paths.ts';

export interface SnapshotMeta {
  computer_id: string;
  template_dir: string;
  apps_installed: string[];
  disk_gb?: number;
  created_at: string;
}

const metaPath = (dataDir: string, name: string) => path.join(snapshotsDir(dataDir), `${name}.json`);
const imagePath = (dataDir: string, name: string) => path.join(snapshotsDir(dataDir), `${name}.img`);

export function writeSnapshotMeta(dataDir: string, name: string, meta: SnapshotMeta): void {
  const file = metaPath(dataDir, name);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(meta, null, 2) + '\n');
  fs.renameSync(`${file}.tmp`, file);
}

export function readSnapshotMeta(dataDir: string, name: string): SnapshotMeta | null {
  try {
    const m = JSON.parse(fs.readFileSync(metaPath(dataDir, name), 'utf8')) as Partial<SnapshotMeta>;
    if (typeof m.template_dir !== 'string' || !Array.isArray(m.apps_installed)) return null;
    return { computer_id: String(m.computer_id ?? ''), template_dir: m.template_dir, apps_installed: m.apps_installed.map(String), disk_gb: typeof m.disk_gb === 'number' ? m.disk_gb : undefined, created_at: String(m.created_at ?? '') };
  } catch {
    return null;
  }
}

/** Every snapshot image on the host, with when it was made (its image's mtime: a reflink copy keeps none of its source's). */
export function listSnapshotFiles(dataDir: string): { name: string; created_ms: number }[] {
  let names: string[];
  try {
    names = fs.readdirSync(snapshotsDir(dataDir));
  } catch {
    return [];
  }
  const out: { name: string; created_ms: number }[] = [];
  for (const file of names) {
    const m = /^([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.img(\.tmp)?$/.exec(file);
    if (!m) continue;
    const st = fs.statSync(path.join(snapshotsDir(dataDir), file), { throwIfNoEntry: false });
    if (!st) continue;
    // A copy cut short by a crash is listed too (by its name), so that it is removed like any stray.
    out.push({ name: m[1], created_ms: st.mtimeMs });
  }
  // One entry per name (an image and its leftover temp copy).
  return [...new Map(out.map((s) => [s.name, s])).values()];
}

/** Removes a snapshot's image, meta and any temp copy; gone already is fine. */
export function removeSnapshotFiles(dataDir: string, name: string): void {
  for (const file of [imagePath(dataDir, name), `${imagePath(dataDir, name)}.tmp`, metaPath(dataDir, name), `${metaPath(dataDir, name)}.tmp`]) fs.rmSync(file, { force: true });
}
