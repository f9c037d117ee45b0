/** What the VM driver needs of its host, checked up front so a failure is one clear sentence. */
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import { QEMU_BINARY } from './qemu.ts';

// tool -> Debian package providing it
const TOOLS: Record<string, string> = {
  [QEMU_BINARY]: 'qemu-system-x86',
  passt: 'passt',
  'mkfs.ext4': 'e2fsprogs',
  tar: 'tar',
  'dpkg-deb': 'dpkg',
  'apt-get': 'apt',
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

/** Throws a DriverError saying exactly what to do when the host cannot run VMs. */
export function checkVmHost(dataDir: string): void {
  if (process.getuid?.() !== 0) {
    throw new DriverError('FAILED', 'the VM driver must run as root (it runs passt for each VM and reads disk images): run the host agent with sudo.');
  }
  const missing = Object.keys(TOOLS).filter((t) => !onPath(t));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => TOOLS[t]))].join(' ');
    throw new DriverError('FAILED', `the VM driver needs ${missing.join(', ')}: run: sudo apt-get install -y ${pkgs}`);
  }
  // Paths go into QEMU's option strings, where commas separate options.
  if (/[,:\s=]/.test(dataDir)) {
    throw new DriverError('FAILED', `the data dir ${JSON.stringify(dataDir)} must not contain commas, colons, equals signs or spaces: choose another --data-dir.`);
  }
}
