/**
 * A computer's disk quota, for both drivers: both keep a computer's disk as
 * an ext4 image whose size is its quota (spec.disk_gb). A quota that grows is
 * applied at the next start, while nothing has the image open; disks never
 * shrink. Copies of those images (clones, snapshots, restores) are made here
 * too, for both.
 */
import fs from 'node:fs';
import type { ComputerSpec } from '../../schema/protocol.ts';
import { DriverError } from './driver.ts';
import { SIZES } from '../../schema/sizes.ts';
import { runCommand } from './sandbox/run-command.ts';

/** The disk quota the control plane asks for, or the size's default when it predates disk quotas. */
export function diskGbOf(spec: ComputerSpec): number {
  return spec.disk_gb ?? SIZES[spec.size].disk_gb;
}

/** Grows the (unused) image and its file system to `bytes`; true when it grew, false when it was that large already. */
export async function growImage(image: string, bytes: number): Promise<boolean> {
  if (fs.statSync(image).size >= bytes) return false;
  fs.truncateSync(image, bytes);
  await runCommand('e2fsck', ['-f', '-p', image]).catch(() => undefined); // resize2fs wants a checked file system
  await runCommand('resize2fs', [image]);
  return true;
}

/** What makes a running computer's file system consistent for a copy, returning what undoes it. */
export type Freeze = () => Promise<() => Promise<void>>;

/**
 * Copies a disk image to `to` through `<to>.tmp`, renamed into place, so a copy cut short is never
 * taken for a disk. `reflink: 'always'` where the caller's storage guarantees reflinks (a reflink
 * keeps the holes too); otherwise a sparse copy, reflinked where the file system can. `freeze`
 * holds a running source still meanwhile.
 */
export async function copyImage(from: string, to: string, opts: { reflink?: 'always' | 'auto'; freeze?: Freeze } = {}): Promise<void> {
  const tmp = `${to}.tmp`;
  fs.rmSync(tmp, { force: true });
  const how = opts.reflink === 'always' ? ['--reflink=always'] : ['--sparse=always', '--reflink=auto'];
  const thaw = opts.freeze ? await opts.freeze() : async () => undefined;
  try {
    await runCommand('cp', [...how, from, tmp], { timeoutMs: 3600_000 });
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err instanceof DriverError ? err : new DriverError('FAILED', `cannot copy a disk image: ${(err as Error).message}`);
  } finally {
    await thaw();
  }
  fs.renameSync(tmp, to);
}
