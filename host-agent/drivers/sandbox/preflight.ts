/** What the sandbox driver needs of its host, checked up front so a failure is one clear sentence. */
import fs from 'node:fs';
import { DriverError } from '../driver.ts';
import { requireRootAndTools } from '../host-tools.ts';

// tool -> Debian package providing it
const TOOLS: Record<string, string> = {
  unshare: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  pivot_root: 'util-linux',
  realpath: 'coreutils',
  pasta: 'passt',
  debootstrap: 'debootstrap',
  'mkfs.ext4': 'e2fsprogs',
  resize2fs: 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  'mkfs.xfs': 'xfsprogs',
  fsfreeze: 'util-linux',
  flock: 'util-linux',
};

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return fallback;
  }
}

/** Throws a DriverError saying exactly what to do when the host cannot run sandboxes. */
export function checkHost(dataDir: string): void {
  requireRootAndTools('sandbox', 'it creates namespaces, mounts and cgroups', TOOLS);
  const filesystems = fs.readFileSync('/proc/filesystems', 'utf8');
  if (!filesystems.includes('\toverlay\n')) {
    throw new DriverError('FAILED', 'the kernel has no overlay filesystem: run: sudo modprobe overlay');
  }
  for (const fsType of ['ext4', 'xfs']) {
    if (!filesystems.includes(`\t${fsType}\n`)) throw new DriverError('FAILED', `the kernel has no ${fsType} file system (computer disks need it): run: sudo modprobe ${fsType}`);
  }
  // Computers run in user namespaces with idmapped mounts (Linux 5.12; overlay over idmapped layers: 5.19).
  const [major, minor] = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number);
  if (major < 5 || (major === 5 && minor < 19)) {
    throw new DriverError('FAILED', `the sandbox driver needs Linux 5.19 or newer (user namespaces with idmapped mounts under overlayfs); this host runs ${major}.${minor}`);
  }
  const maxUserNs = Number(readOr('/proc/sys/user/max_user_namespaces', '1'));
  if (maxUserNs < 1) throw new DriverError('FAILED', 'user namespaces are disabled: run: sudo sysctl -w user.max_user_namespaces=65536');
  // The data dir goes into overlayfs mount options, where these characters are separators.
  if (/[,:\s]/.test(dataDir)) {
    throw new DriverError('FAILED', `the data dir ${JSON.stringify(dataDir)} must not contain commas, colons or spaces: choose another --data-dir.`);
  }
}
