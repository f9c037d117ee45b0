/**
 * What computers need from the host system beyond util-linux: passt (their
 * network), debootstrap (their base image), e2fsprogs (their disk images) and
 * xfsprogs (the disk pool, when the data dir cannot reflink). Installed with
 * apt on first use when we are root; otherwise one sentence says what to run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const NEEDED = [
  { bin: '/usr/bin/pasta', pkg: 'passt' },
  { bin: '/usr/sbin/debootstrap', pkg: 'debootstrap' },
  { bin: '/usr/sbin/mkfs.ext4', pkg: 'e2fsprogs' },
  { bin: '/usr/sbin/mkfs.xfs', pkg: 'xfsprogs' },
];

export function ensureSystemDeps(log: (s: string) => void = console.log): void {
  const missing = NEEDED.filter((n) => !existsSync(n.bin)).map((n) => n.pkg);
  if (missing.length === 0) return;
  const cmd = `apt-get install -y ${missing.join(' ')}`;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    throw new Error(`Computers need ${missing.join(', ')}; run: sudo ${cmd}`);
  }
  log(`installing ${missing.join(', ')} (first run only)…`);
  for (const args of [['update'], ['install', '-y', ...missing]]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed; run: sudo ${cmd}`);
  }
}
