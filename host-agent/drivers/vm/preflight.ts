/** What the VM driver needs of its host, checked up front so a failure is one clear sentence. */
import { DriverError } from '../driver.ts';
import { requireRootAndTools } from '../host-tools.ts';
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

/** Throws a DriverError saying exactly what to do when the host cannot run VMs. */
export function checkVmHost(dataDir: string): void {
  requireRootAndTools('VM', 'it runs passt for each VM and reads disk images', TOOLS);
  // Paths go into QEMU's option strings, where commas separate options.
  if (/[,:\s=]/.test(dataDir)) {
    throw new DriverError('FAILED', `the data dir ${JSON.stringify(dataDir)} must not contain commas, colons, equals signs or spaces: choose another --data-dir.`);
  }
}
