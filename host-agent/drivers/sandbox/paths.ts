/**
 * Where a sandbox driver keeps things under its data dir:
 *
 *   templates/<name>-<recipe hash>/     immutable root (overlay lower dir)
 *   templates/<...>.runtime-N/, .guest-<hash>/  the guest's own runtime (host-agent/guest/runtime.ts)
 *   templates/.build-*                  a build in progress (never used as a root)
 *   disks/<id>.img                      the computer's disk: a sparse ext4 image holding the
 *                                       overlay's upper and work dirs (its size is the quota)
 *   disks/snapshots/<name>.img          point-in-time copies of disks (reflinks)
 *   disks.xfs                           when the data dir cannot reflink: an XFS image mounted
 *                                       at disks/ (storage.ts)
 *   computers/<id>/meta.json            what the computer is (template, size, disk size, apps)
 *   computers/<id>/state.json           the running sandbox (launcher pid and start time, pasta pid, ...)
 *   computers/<id>/console.log          output of the sandbox and its guest agent
 *   computers/<id>/run                  bind-mounted at /run/hangar inside: guest.sock
 *   computers/<id>/upper, work          a disk of the old layout (a plain upper dir), converted
 *                                       into disks/<id>.img at its next boot
 */
import path from 'node:path';
import { DriverError } from '../driver.ts';

export interface ComputerPaths {
  dir: string;
  /** The disk image. */
  image: string;
  /** Old layout: the overlay upper and work dirs on the host's file system. */
  upper: string;
  work: string;

  run: string;
  socket: string;
  meta: string;
  state: string;
  log: string;
}

// Ids become path components and cgroup names: keep them boring.
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function assertSafeId(id: string): void {
  if (!SAFE_ID.test(id)) throw new DriverError('BAD_REQUEST', `invalid computer id ${JSON.stringify(id)}`);
}

export const templatesDir = (dataDir: string) => path.join(dataDir, 'templates');
export const computersDir = (dataDir: string) => path.join(dataDir, 'computers');
export const disksDir = (dataDir: string) => path.join(dataDir, 'disks');
export const snapshotsDir = (dataDir: string) => path.join(disksDir(dataDir), 'snapshots');

export function computerPaths(dataDir: string, id: string): ComputerPaths {
  assertSafeId(id);
  const dir = path.join(computersDir(dataDir), id);
  return {
    dir,
    image: path.join(disksDir(dataDir), `${id}.img`),
    upper: path.join(dir, 'upper'),
    work: path.join(dir, 'work'),

    run: path.join(dir, 'run'),
    socket: path.join(dir, 'run', 'guest.sock'),
    meta: path.join(dir, 'meta.json'),
    state: path.join(dir, 'state.json'),
    log: path.join(dir, 'console.log'),
  };
}

/** A hostname from a computer name: lowercase letters, digits and dashes, at most 63 characters. */
export function hostnameFromName(name: string): string {
  const slug = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // accents, split off by NFKD: "é" -> "e"
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return slug || 'computer';
}
