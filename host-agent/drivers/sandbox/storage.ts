/**
 * Where disk images live, and the file operations on them.
 *
 * A computer's disk is a sparse ext4 image whose size is its quota: filling it
 * gives ENOSPC inside and takes nothing more from the host. Copies (clone,
 * snapshots) must be reflinks, so that copying a running computer's disk
 * takes milliseconds whatever its size (its file system frozen meanwhile) and
 * no empty space is ever rewritten. So `<data dir>/disks` is:
 *   - a plain directory when the data dir's file system can reflink (XFS,
 *     btrfs), or
 *   - the mount point of an XFS file system in `<data dir>/disks.xfs`, a sparse
 *     image made and loop-mounted here (under a lock, so agents sharing a data
 *     dir agree) when it cannot (ext4, the common case). Its size is the
 *     operator's (--disk-pool-gb), by default the data dir's free space at the
 *     time it is made; like the disks in it, it is thin: the host's file system
 *     must keep room for what computers write.
 * Everything stays inside the data dir; release() unmounts the pool when no
 * disk is in use (test stacks call it before deleting their data dir).
 */
import fs from 'node:fs';
import path from 'node:path';
import { copyImage, growImage } from '../disk-quota.ts';
import { DriverError } from '../driver.ts';
import { disksDir, snapshotsDir } from './paths.ts';
import { runCommand } from './run-command.ts';

const GiB = 1024 ** 3;

export interface StorageOptions {
  /** Size of the XFS pool, when one is needed; default: the data dir's free space. */
  poolGb?: number;
}

export class DiskStorage {
  readonly dataDir: string;
  readonly dir: string;
  private readonly poolGb: number | undefined;
  private ready: Promise<void> | null = null;

  constructor(dataDir: string, opts: StorageOptions = {}) {
    this.dataDir = dataDir;
    this.dir = disksDir(dataDir);
    this.poolGb = opts.poolGb;
  }

  get poolImage(): string {
    return `${this.dir}.xfs`;
  }

  /** Makes `disks/` usable (mounting the pool if this data dir needs one); cheap after the first call. */
  ensure(): Promise<void> {
    if (this.ready && isMountPoint(this.dir) === this.usesPool()) return this.ready;
    this.ready = this.setup().catch((err: unknown) => {
      this.ready = null;
      throw err;
    });
    return this.ready;
  }

  private usesPool(): boolean {
    return fs.existsSync(this.poolImage);
  }

  private async setup(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    if (isMountPoint(this.dir)) return;
    if (!this.usesPool() && (await canReflink(this.dir))) return;
    const size = this.poolGb ? this.poolGb * GiB : Math.max(8 * GiB, fs.statfsSync(this.dataDir).bavail * fs.statfsSync(this.dataDir).bsize);
    // flock(1) serializes agents of one data dir; the script re-checks everything under the lock.
    const script = `set -eu
dir=$1 img=$2 size=$3
if mountpoint -q "$dir"; then exit 0; fi
if [ ! -e "$img" ]; then
  if [ -n "$(ls -A "$dir")" ]; then echo "$dir is not empty; it must be empty to hold the disk pool" >&2; exit 1; fi
  rm -f "$img.tmp"
  truncate -s "$size" "$img.tmp"
  mkfs.xfs -q -f -K -m reflink=1 "$img.tmp"
  mv "$img.tmp" "$img"
fi
mount -t xfs -o loop,nodev,nosuid,noexec "$img" "$dir"`;
    await runCommand('flock', ['-w', '120', `${this.dir}.lock`, 'sh', '-c', script, 'sh', this.dir, this.poolImage, String(size)]).catch((err: unknown) => {
      throw new DriverError('FAILED', `cannot set up the disk pool ${this.poolImage}: ${(err as Error).message}`);
    });
  }

  /** Unmounts the pool if nothing uses it (a running computer's disk keeps it busy: then it stays). */
  async release(): Promise<void> {
    this.ready = null;
    if (!this.usesPool() || !isMountPoint(this.dir)) return;
    await runCommand('umount', [this.dir]).catch(() => undefined);
  }

  /** A new empty disk image of `sizeGb` at `image` (sparse: a few MB are written). */
  async create(image: string, sizeGb: number): Promise<void> {
    await this.ensure();
    const tmp = `${image}.tmp`;
    fs.rmSync(tmp, { force: true });
    try {
      fs.closeSync(fs.openSync(tmp, 'w', 0o600));
      fs.truncateSync(tmp, sizeGb * GiB);
      // Lazy init: inode tables and the journal are not zeroed, so the image stays sparse.
      await runCommand('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', '-L', 'hangar-disk', tmp]);
      fs.renameSync(tmp, image);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err instanceof DriverError ? err : new DriverError('FAILED', `cannot create a disk image: ${(err as Error).message}`);
    }
  }

  /** Copies an image as a reflink (shared extents, instant); `from` must not change meanwhile (stopped or frozen). */
  async copy(from: string, to: string): Promise<void> {
    await this.ensure();
    await copyImage(from, to, { reflink: 'always' }); // the pool makes reflinks: a copy takes no room and milliseconds
  }

  /** Grows a stopped computer's image and its file system to `sizeGb` (disks never shrink). */
  async grow(image: string, sizeGb: number): Promise<void> {
    await growImage(image, sizeGb * GiB);
  }

  /** Bytes the image's file system holds and can hold, from its superblock (works while it is mounted). */
  async usage(image: string): Promise<{ usedBytes: number; sizeBytes: number } | null> {
    try {
      const out = await runCommand('dumpe2fs', ['-h', image]);
      const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(out)?.[1] ?? NaN);
      const blockSize = field('Block size');
      const total = field('Block count');
      const free = field('Free blocks');
      if (![blockSize, total, free].every(Number.isFinite)) return null;
      return { usedBytes: (total - free) * blockSize, sizeBytes: total * blockSize };
    } catch {
      return null;
    }
  }

  snapshotPath(name: string): string {
    return path.join(snapshotsDir(this.dataDir), `${name}.img`);
  }
}

/** Whether the file system of `dir` makes reflink copies (FICLONE): one probe file, copied with --reflink=always. */
async function canReflink(dir: string): Promise<boolean> {
  const probe = path.join(dir, `.reflink-probe-${process.pid}`);
  try {
    fs.writeFileSync(probe, 'probe');
    await runCommand('cp', ['--reflink=always', probe, `${probe}.copy`]);
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { force: true });
    fs.rmSync(`${probe}.copy`, { force: true });
  }
}

function isMountPoint(dir: string): boolean {
  const target = dir.replace(/ /g, '\\040');
  try {
    return fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[4] === target);
  } catch {
    return false;
  }
}
