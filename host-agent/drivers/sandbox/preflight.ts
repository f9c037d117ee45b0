/** What the sandbox driver needs of its host, checked up front so a failure is one clear sentence. */
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from '../driver.ts';

// tool -> Debian package providing it
const TOOLS: Record<string, string> = {
  unshare: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  pivot_root: 'util-linux',
  realpath: 'coreutils',
  pasta: 'passt',
  debootstrap: 'debootstrap',
};

function onPath(tool: string): boolean {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  return dirs.some((d) => {
    try {
      fs.accessSync(path.join(d, tool), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Throws a DriverError saying exactly what to do when the host cannot run sandboxes. */
export function checkHost(dataDir: string): void {
  if (process.getuid?.() !== 0) {
    throw new DriverError('FAILED', 'the sandbox driver must run as root (it creates namespaces, mounts and cgroups): run the host agent with sudo.');
  }
  const missing = Object.keys(TOOLS).filter((t) => !onPath(t));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => TOOLS[t]))].join(' ');
    throw new DriverError('FAILED', `the sandbox driver needs ${missing.join(', ')}: run: sudo apt-get install -y ${pkgs}`);
  }
  if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('\toverlay\n')) {
    throw new DriverError('FAILED', 'the kernel has no overlay filesystem: run: sudo modprobe overlay');
  }
  // The data dir goes into overlayfs mount options, where these characters are separators.
  if (/[,:\s]/.test(dataDir)) {
    throw new DriverError('FAILED', `the data dir ${JSON.stringify(dataDir)} must not contain commas, colons or spaces: choose another --data-dir.`);
  }
}
