/**
 * Disks of the old layout: before disk images, a computer's overlay upper dir
 * was a plain directory (computers/<id>/upper) on the host's file system,
 * with root-written trusted.overlay.* marks. Such a disk is converted once, at
 * its next boot (or when it is cloned): a new image of the computer's disk
 * size receives a copy of the upper dir with its marks renamed for an overlay
 * mounted inside a user namespace (launcher/hangar_launcher/convert.py). The
 * upper dir is removed only once the image is in place, so an interrupted
 * conversion is simply done again.
 */
import fs from 'node:fs';
import type { GuestRuntime } from '../../guest/runtime.ts';
import type { ProgressFn } from '../driver.ts';
import type { ComputerPaths } from './paths.ts';
import { runCommand } from './run-command.ts';
import type { DiskStorage } from './storage.ts';

export function hasLegacyDisk(paths: ComputerPaths): boolean {
  return fs.existsSync(paths.upper);
}

/** Writes `image` (of `sizeGb`) from the old-layout upper dir `upper`. */
export async function convertUpperDir(storage: DiskStorage, runtime: GuestRuntime, upper: string, image: string, sizeGb: number): Promise<void> {
  const tmp = `${image}.converting`;
  await storage.create(tmp, sizeGb);
  try {
    const [cmd, ...args] = runtime.launcherArgv();
    await runCommand(cmd, [...args, 'convert', upper, tmp], { env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' } });
    fs.renameSync(tmp, image);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Converts a computer's own old-layout disk in place, once. */
export async function convertLegacyDisk(storage: DiskStorage, runtime: GuestRuntime, paths: ComputerPaths, sizeGb: number, onProgress: ProgressFn): Promise<void> {
  if (!fs.existsSync(paths.image)) {
    onProgress({ phase: 'disk', message: 'converting the disk to a disk image (once)' });
    await convertUpperDir(storage, runtime, paths.upper, paths.image, sizeGb);
  }
  fs.rmSync(paths.upper, { recursive: true, force: true });
  fs.rmSync(paths.work, { recursive: true, force: true });
}
