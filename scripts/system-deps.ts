/**
 * What computers need from the host system beyond util-linux: passt (their
 * network), debootstrap (their base image), e2fsprogs (their disk images) and
 * xfsprogs (the disk pool, when the data dir cannot reflink); for VM computers
 * also QEMU and a static busybox (their boot image). Installed with apt on
 * first use when we are root; otherwise one sentence says what to run. The VM
 * driver fetches its guest kernel itself (apt-get download, unpacked under the
 * data dir, never installed on the host), showing its progress.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { staticBusybox } from '../host-agent/drivers/vm/boot-image.ts';

const isStaticBusybox = () => {
  try {
    staticBusybox();
    return true;
  } catch {
    return false;
  }
};

const NEEDED: Array<{ pkg: string; present: () => boolean; vm?: true }> = [
  { pkg: 'passt', present: () => existsSync('/usr/bin/pasta') },
  { pkg: 'debootstrap', present: () => existsSync('/usr/sbin/debootstrap') },
  { pkg: 'e2fsprogs', present: () => existsSync('/usr/sbin/mkfs.ext4') },
  { pkg: 'xfsprogs', present: () => existsSync('/usr/sbin/mkfs.xfs') },
  { pkg: 'qemu-system-x86', present: () => existsSync('/usr/bin/qemu-system-x86_64'), vm: true },
  { pkg: 'busybox-static', present: isStaticBusybox, vm: true },
];

/** Installs what the drivers need (the VM packages only when `vm`), with apt's own progress on the terminal. */
export function ensureSystemDeps(log: (s: string) => void = console.log, opts: { vm?: boolean } = {}): void {
  const missing = NEEDED.filter((n) => (opts.vm || !n.vm) && !n.present()).map((n) => n.pkg);
  if (missing.length === 0) return;
  // Without recommends: QEMU's would bring firmware for every other machine type.
  const cmd = `apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    throw new Error(`Computers need ${missing.join(', ')}; run: sudo ${cmd}`);
  }
  log(`installing ${missing.join(', ')} (first run only)…`);
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...missing]]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed; run: sudo ${cmd}`);
  }
}
