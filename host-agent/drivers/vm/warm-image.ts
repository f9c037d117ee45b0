/**
 * Warm images: new computers start from a booted machine's memory instead of
 * booting. For each shape (vCPUs, memory, disk size) and each set of boot
 * files (kernel, boot image, guest image, template base image, accelerator)
 * one machine is booted once, with an empty disk of that size, until its
 * guest agent answers and its network is up; its disk is synced and its
 * memory saved, and it is put away with the disk as it was at that instant.
 * A new computer is then a copy of that disk and a load of that memory into
 * a machine built the same way around the copy; the guest takes its own
 * hostname, the host's clock and fresh entropy (guest op `machine`). Under
 * software emulation that turns a boot of several seconds (mostly the
 * kernel and the first Python under emulation) into a load of about a
 * second.
 *
 *   vm/images/warm-<hash>/disk.img            the disk as it was when the memory was saved
 *   vm/images/warm-<hash>/memory.state(.json) the memory and the machine it came from
 *   vm/images/warm-<hash>/warm.json           the directory the machine ran in (its argv names it)
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { readMemoryRecord, type MemoryRecord } from './memory-image.ts';
import { imagesDir, vmPathsIn, type VmPaths } from './paths.ts';

export interface WarmShape {
  vcpus: number;
  memoryMb: number;
  diskMb: number;
}

export interface WarmImage {
  dir: string;
  disk: string;
  memory: string;
  record: MemoryRecord;
}

/** Everything the machine is made of: a warm image fits only a machine built from the very same. */
export function warmKey(files: string[], shape: WarmShape, kernelLine: string[]): string {
  return createHash('sha256').update(JSON.stringify({ files, shape, kernelLine, layout: 1 })).digest('hex').slice(0, 16);
}

export const warmDir = (dataDir: string, key: string) => path.join(imagesDir(dataDir), `warm-${key}`);

/** The warm image in `dir`, if one was made. */
export function findWarm(dir: string): WarmImage | null {
  const paths = vmPathsIn(dir);
  const record = readMemoryRecord(paths);
  if (!record || !fs.existsSync(paths.disk) || !fs.existsSync(path.join(dir, 'warm.json'))) return null;
  let ranIn: string;
  try {
    ranIn = (JSON.parse(fs.readFileSync(path.join(dir, 'warm.json'), 'utf8')) as { ran_in: string }).ran_in;
  } catch {
    return null;
  }
  // Its argv names the directory it ran in; a computer's machine runs in the computer's.
  return { dir, disk: paths.disk, memory: paths.memory, record: { ...record, argv: record.argv.map((a) => a.split(ranIn).join(WARM_DIR_MARK)) } };
}

/** Stands for the directory a machine runs in, in a warm image's argv. */
const WARM_DIR_MARK = '\u0000DIR\u0000';

/** The warm image's machine, built around the computer's own directory (its disk, sockets and logs). */
export function machineFor(warm: WarmImage, paths: VmPaths): MemoryRecord {
  return { ...warm.record, argv: warm.record.argv.map((a) => a.split(WARM_DIR_MARK).join(paths.dir)) };
}

/** Unused this long, a warm image goes (each is the size of its machine's touched memory). */
const UNUSED_DAYS = 14;

/** Marks a warm image as used, so pruning keeps it. */
export function touchWarm(warm: WarmImage): void {
  const now = new Date();
  fs.utimesSync(warm.dir, now, now);
}

/** Removes warm images nothing will use again: made from files that are gone, or unused for weeks. */
export function pruneWarm(dataDir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(imagesDir(dataDir)).filter((n) => n.startsWith('warm-'));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = path.join(imagesDir(dataDir), name);
    const record = readMemoryRecord(vmPathsIn(dir));
    const files = record ? [flag(record.argv, '-kernel'), flag(record.argv, '-initrd')] : [];
    const stale = !record || files.some((f) => !f || !fs.existsSync(f)) || Date.now() - fs.statSync(dir).mtimeMs > UNUSED_DAYS * 86_400_000;
    if (stale) fs.rmSync(dir, { recursive: true, force: true });
  }
}

function flag(argv: string[], name: string): string {
  const i = argv.indexOf(name);
  return i >= 0 ? (argv[i + 1] ?? '') : '';
}

/** Notes, in a warm image being made, the directory its machine ran in. */
export function noteRanIn(dir: string): void {
  fs.writeFileSync(path.join(dir, 'warm.json'), JSON.stringify({ ran_in: dir, made_at: new Date().toISOString() }) + '\n');
}
