/**
 * A computer's disk quota, for both drivers: both keep a computer's disk as
 * an ext4 image whose size is its quota (spec.disk_gb). A quota that grows is
 * applied at the next start, while nothing has the image open; disks never
 * shrink.
 */
import fs from 'node:fs';
import type { ComputerSpec } from '../../schema/protocol.ts';
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
