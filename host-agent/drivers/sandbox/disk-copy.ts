/**
 * Consistent copies of a computer's disk image: a stopped computer's image is
 * copied as it is; a running one's file system is frozen (fsfreeze, through
 * the launcher's fd on it, which reaches into the computer's mount namespace)
 * for the reflink copy, which takes milliseconds whatever the disk's size.
 * Writers inside simply wait meanwhile. Clone and snapshots use this.
 */
import fs from 'node:fs';
import { DriverError } from '../driver.ts';
import { isAlive, type SandboxState } from './launch.ts';
import { runCommand } from './run-command.ts';
import type { DiskStorage } from './storage.ts';

/** The disk's file system as the host reaches it while the computer runs, or null (stopped, or an old launcher). */
export function liveDiskPath(state: SandboxState | null): string | null {
  if (!state || state.disk_fd === undefined || !isAlive(state)) return null;
  return `/proc/${state.pid}/fd/${state.disk_fd}`;
}

/** Copies `image` to `to`; `running` is the computer's state when it runs (its disk is frozen for the copy). */
export async function copyDiskImage(storage: DiskStorage, image: string, to: string, running: SandboxState | null): Promise<void> {
  if (!fs.existsSync(image)) throw new DriverError('FAILED', 'the computer has a disk of the old layout; start it once to convert it, then copy it');
  const live = running ? liveDiskPath(running) : null;
  if (running && !live) throw new DriverError('FAILED', 'the computer is running on an old launcher; restart it before copying its disk');
  if (!live) return storage.copy(image, to);
  await runCommand('fsfreeze', ['--freeze', live]);
  try {
    await storage.copy(image, to);
  } finally {
    await thaw(live);
  }
}

/** Thaws a frozen disk (an agent that died mid-copy leaves it frozen); not frozen is fine. */
export async function thaw(live: string): Promise<void> {
  await runCommand('fsfreeze', ['--unfreeze', live]).catch(() => undefined);
}
