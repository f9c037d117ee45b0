/**
 * The boot image (initramfs) every VM starts from: a static busybox, the
 * handful of kernel modules a VM needs (virtio transport, disks, channels,
 * network, entropy, overlayfs) in load order, and the scripts
 * in boot/ (stage-one init, init's table, the guest runner, the control loop,
 * power-off, the DHCP hook). It is a few megabytes, built in milliseconds,
 * and named by a hash of everything in it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DriverError } from '../driver.ts';
import { runCommand } from '../sandbox/run-command.ts';
import { buildPath, publish } from './build-dir.ts';
import { cpioArchive, type CpioEntry } from './cpio.ts';
import type { GuestKernel } from './kernel.ts';
import { imagesDir } from './paths.ts';

const BOOT_DIR = fileURLToPath(new URL('./boot/', import.meta.url));
const SCRIPTS = ['guest', 'control', 'halt', 'dhcp'];

/** What a VM loads at boot; their dependencies come first, found from the modules themselves. */
export const BOOT_MODULES = ['virtio_mmio', 'virtio_blk', 'virtio_console', 'virtio_net', 'virtio_rng', 'overlay'];

const BUSYBOX_PATHS = ['/bin/busybox', '/usr/bin/busybox'];

/** Builds (or finds) the boot image for `kernel`; returns its path. */
export async function ensureBootImage(dataDir: string, kernel: GuestKernel): Promise<string> {
  const { path: busyboxPath, data: busybox } = staticBusybox();
  const modules = moduleLoadOrder(kernel.modules, BOOT_MODULES);
  const files = new Map<string, Buffer>([['init', read('init')], ['inittab', read('inittab')], ...SCRIPTS.map((s) => [s, read(s)] as [string, Buffer])]);
  const hash = createHash('sha256');
  hash.update(busybox).update(kernel.release).update(modules.map((m) => m.name).join(','));
  for (const [name, data] of files) hash.update(name).update(data);
  const final = path.join(imagesDir(dataDir), `boot-${kernel.release}-${hash.digest('hex').slice(0, 16)}.cpio`);
  if (fs.existsSync(final)) return final;

  const applets = (await runCommand(busyboxPath, ['--list'])).split('\n').map((a) => a.trim()).filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox');
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'run', 'tmp', 'etc', 'etc/hangar', 'lib', 'lib/modules', 'lower', 'disk', 'root'].map((d) => ({ path: d, type: 'dir' as const })),
    // The kernel opens it for init's stdio before anything is mounted.
    { path: 'dev/console', type: 'char', major: 5, minor: 1 },
    { path: 'bin/busybox', type: 'file', data: busybox, mode: 0o755 },
    ...applets.map((a) => ({ path: `bin/${a}`, type: 'symlink' as const, target: 'busybox' })),
    { path: 'init', type: 'file', data: files.get('init')!, mode: 0o755 },
    { path: 'etc/inittab', type: 'file', data: files.get('inittab')! },
    ...SCRIPTS.map((s) => ({ path: `etc/hangar/${s}`, type: 'file' as const, data: files.get(s)!, mode: 0o755 })),
    { path: 'etc/hangar/modules', type: 'file', data: Buffer.from(modules.map((m) => m.name).join('\n') + '\n') },
    ...modules.map((m) => ({ path: `lib/modules/${m.name}.ko`, type: 'file' as const, data: fs.readFileSync(m.file) })),
  ];
  fs.mkdirSync(path.dirname(final), { recursive: true });
  const tmp = buildPath(final);
  fs.writeFileSync(tmp, cpioArchive(entries));
  publish(tmp, final);
  return final;
}

function read(name: string): Buffer {
  return fs.readFileSync(path.join(BOOT_DIR, name));
}

/** The host's busybox, which must be the static build: the boot image has no C library. */
export function staticBusybox(): { path: string; data: Buffer } {
  for (const p of BUSYBOX_PATHS) {
    if (!fs.existsSync(p)) continue;
    const data = fs.readFileSync(p);
    if (!hasInterpreter(data)) return { path: p, data };
    throw new DriverError('FAILED', `${p} is dynamically linked; the VM driver needs the static build: apt-get install -y busybox-static`);
  }
  throw new DriverError('FAILED', 'the VM driver needs busybox: apt-get install -y busybox-static');
}

/** Whether an ELF file names a dynamic loader (a PT_INTERP program header). */
function hasInterpreter(elf: Buffer): boolean {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return true; // not a 64-bit ELF: not usable either way
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const size = elf.readUInt16LE(0x36);
  const count = elf.readUInt16LE(0x38);
  for (let i = 0; i < count; i++) if (elf.readUInt32LE(phoff + i * size) === 3) return true;
  return false;
}

interface Module {
  name: string;
  file: string;
}

/** `wanted` and everything they depend on, dependencies first (read from each module's .modinfo). */
export function moduleLoadOrder(modulesDir: string, wanted: string[]): Module[] {
  const files = new Map<string, string>();
  for (const rel of fs.readFileSync(path.join(modulesDir, 'modules.order'), 'utf8').split('\n')) {
    if (rel.endsWith('.ko')) files.set(path.basename(rel, '.ko').replace(/-/g, '_'), path.join(modulesDir, rel));
  }
  const builtin = new Set(
    fs.readFileSync(path.join(modulesDir, 'modules.builtin'), 'utf8').split('\n').map((rel) => path.basename(rel, '.ko').replace(/-/g, '_')),
  );
  const order: Module[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name) || builtin.has(name)) return;
    seen.add(name);
    const file = files.get(name);
    if (!file) throw new DriverError('FAILED', `the guest kernel has no module ${name}`);
    const deps = /\0depends=([^\0]*)\0/.exec(fs.readFileSync(file).toString('latin1'))?.[1] ?? '';
    for (const dep of deps.split(',').filter(Boolean)) visit(dep.replace(/-/g, '_'));
    order.push({ name, file });
  };
  for (const name of wanted) visit(name);
  return order;
}
