/**
 * The guest kernel: Debian's cloud kernel (`linux-image-cloud-amd64`, built
 * for virtual machines: virtio, no hardware drivers), fetched with the host's
 * own apt and unpacked under the data dir — never installed on the host,
 * where a second kernel package would change what the host itself boots.
 *
 * QEMU boots its uncompressed ELF directly (PVH), so the bzImage's payload
 * is decompressed once here. The module tree stays beside it: the boot image
 * takes the few modules a VM needs, and computers may load the others.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { DriverError, type ProgressFn } from '../driver.ts';
import { runCommand } from '../sandbox/run-command.ts';
import { BuildOnce, buildPath, publish, removeAbandonedBuilds } from './build-dir.ts';
import { decompressLz4Legacy, isLz4Legacy } from './lz4.ts';
import { imagesDir } from './paths.ts';

export const KERNEL_PACKAGE = 'linux-image-cloud-amd64';

export interface GuestKernel {
  dir: string;
  /** The versioned package it came from, e.g. linux-image-6.1.0-57-cloud-amd64 6.1.192-3. */
  package: string;
  version: string;
  /** `uname -r` inside the VM. */
  release: string;
  vmlinux: string;
  /** The package's compressed kernel, as it came. */
  bzImage: string;
  /** lib/modules/<release> of the package. */
  modules: string;
}

const SAFE = /^[A-Za-z0-9.+~:_-]+$/;
/** Bumped when what a kernel dir holds changes, so an agent never takes an older layout for complete. */
const LAYOUT = 2;

export class KernelStore {
  private readonly dir: string;
  private readonly once = new BuildOnce<GuestKernel>();

  constructor(dataDir: string) {
    this.dir = imagesDir(dataDir);
  }

  /** The newest kernel apt offers, fetched on first use; without apt, the newest one already here. */
  async ensure(onProgress: ProgressFn): Promise<GuestKernel> {
    fs.mkdirSync(this.dir, { recursive: true });
    const wanted = await candidate().catch(() => null);
    if (!wanted) {
      const have = this.newest();
      if (have) return have;
      throw new DriverError('FAILED', `the VM driver needs Debian's ${KERNEL_PACKAGE} and apt cannot find it: run apt-get update (on Debian or Ubuntu with Debian sources) and start again.`);
    }
    const final = path.join(this.dir, `kernel${LAYOUT}-${wanted.package}_${wanted.version}`);
    const ready = load(final);
    if (ready) return ready;
    return this.once.run(final, () => this.fetch(wanted, final, onProgress));
  }

  private async fetch(wanted: { package: string; version: string }, final: string, onProgress: ProgressFn): Promise<GuestKernel> {
    removeAbandonedBuilds(this.dir);
    const tmp = buildPath(final);
    fs.mkdirSync(tmp, { recursive: true });
    try {
      onProgress({ phase: 'vm', message: `downloading the guest kernel ${wanted.package} ${wanted.version}`, fraction: 0 });
      const deb = path.join(tmp, 'kernel.deb');
      // apt-get download writes into the working directory, under apt's own file name.
      await runCommand('sh', ['-c', 'cd "$1" && exec apt-get download -q "$2=$3"', 'sh', tmp, wanted.package, wanted.version], { timeoutMs: 600_000 });
      const fetched = fs.readdirSync(tmp).find((f) => f.endsWith('.deb'));
      if (!fetched) throw new DriverError('FAILED', 'apt-get download left no package');
      fs.renameSync(path.join(tmp, fetched), deb);
      onProgress({ phase: 'vm', message: 'unpacking the guest kernel', fraction: 0.5 });
      const root = path.join(tmp, 'pkg');
      await runCommand('dpkg-deb', ['-x', deb, root]);
      fs.rmSync(deb);
      const release = fs.readdirSync(path.join(root, 'lib/modules'))[0];
      if (!release || !SAFE.test(release)) throw new DriverError('FAILED', `${wanted.package} has no module tree`);
      const vmlinuz = path.join(root, 'boot', `vmlinuz-${release}`);
      fs.writeFileSync(path.join(tmp, 'vmlinux'), await extractVmlinux(fs.readFileSync(vmlinuz)));
      fs.copyFileSync(vmlinuz, path.join(tmp, 'vmlinuz'));
      fs.renameSync(path.join(root, 'lib/modules', release), path.join(tmp, 'modules'));
      fs.copyFileSync(path.join(root, 'boot', `config-${release}`), path.join(tmp, 'config'));
      fs.rmSync(root, { recursive: true, force: true });
      fs.writeFileSync(path.join(tmp, 'kernel.json'), JSON.stringify({ package: wanted.package, version: wanted.version, release }) + '\n');
      publish(tmp, final);
      onProgress({ phase: 'vm', message: `guest kernel ${release} ready`, fraction: 1 });
      const kernel = load(final);
      if (!kernel) throw new DriverError('FAILED', `the guest kernel in ${final} is incomplete`);
      return kernel;
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      if (err instanceof DriverError) throw new DriverError('FAILED', `fetching the guest kernel failed: ${err.message}`);
      throw new DriverError('FAILED', `fetching the guest kernel failed: ${(err as Error).message}`);
    }
  }

  private newest(): GuestKernel | null {
    const kernels = fs
      .readdirSync(this.dir)
      .filter((n) => n.startsWith(`kernel${LAYOUT}-`))
      .map((n) => load(path.join(this.dir, n)))
      .filter((k): k is GuestKernel => k !== null);
    kernels.sort((a, b) => fs.statSync(b.dir).mtimeMs - fs.statSync(a.dir).mtimeMs);
    return kernels[0] ?? null;
  }
}

/** The versioned kernel package the metapackage points at now, from apt's local lists (no network). */
async function candidate(): Promise<{ package: string; version: string }> {
  const out = await runCommand('apt-cache', ['show', '--no-all-versions', KERNEL_PACKAGE], { timeoutMs: 30_000 });
  const m = /^Depends:.*?\b(linux-image-[0-9][^\s,(]*)\s*\(=\s*([^)\s]+)\)/m.exec(out);
  if (!m || !SAFE.test(m[1]) || !SAFE.test(m[2])) throw new Error(`cannot read ${KERNEL_PACKAGE}'s dependency`);
  return { package: m[1], version: m[2] };
}

function load(dir: string): GuestKernel | null {
  try {
    const info = JSON.parse(fs.readFileSync(path.join(dir, 'kernel.json'), 'utf8')) as { package: string; version: string; release: string };
    const kernel = { dir, ...info, vmlinux: path.join(dir, 'vmlinux'), bzImage: path.join(dir, 'vmlinuz'), modules: path.join(dir, 'modules') };
    return fs.existsSync(kernel.bzImage) ? kernel : null;
  } catch {
    return null;
  }
}

/**
 * The ELF kernel inside a bzImage: the setup header says where the
 * compressed payload is (boot protocol 2.08+); its first bytes say how it is
 * compressed.
 */
export async function extractVmlinux(bzImage: Buffer): Promise<Buffer> {
  if (bzImage.readUInt32LE(0x202) !== 0x53726448) throw new DriverError('FAILED', 'the kernel image is not a bzImage');
  const setupSects = bzImage[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + bzImage.readUInt32LE(0x248);
  const payload = bzImage.subarray(start, start + bzImage.readUInt32LE(0x24c));
  let elf: Buffer;
  if (isLz4Legacy(payload)) elf = decompressLz4Legacy(payload);
  else if (payload[0] === 0x1f && payload[1] === 0x8b) elf = zlib.gunzipSync(payload);
  else if (payload.readUInt32LE(0) === 0xfd2fb528 && typeof zlib.zstdDecompressSync === 'function') elf = zlib.zstdDecompressSync(payload);
  else if (payload.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) elf = await unxz(payload);
  else throw new DriverError('FAILED', 'the kernel is compressed in a way this agent cannot read');
  if (elf.readUInt32BE(0) !== 0x7f454c46) throw new DriverError('FAILED', 'the decompressed kernel is not an ELF image');
  return elf;
}

function unxz(data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('xz', ['-dc', '--single-stream'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.on('error', () => reject(new DriverError('FAILED', 'the kernel is xz-compressed and xz is not installed: apt-get install -y xz-utils')));
    child.on('close', () => resolve(Buffer.concat(out)));
    child.stdin.on('error', () => undefined);
    child.stdin.end(data);
  });
}
