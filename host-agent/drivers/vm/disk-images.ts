/**
 * The read-only disks every VM of a host shares, both per template:
 *  - the base image: an ext4 image of the very template root the sandbox
 *    driver uses as its overlay's lower dir, built once per template (a few
 *    seconds) and attached read-only to every VM made from it;
 *  - the guest image: the guest agent on its own runtime (its interpreter,
 *    libraries and loader: host-agent/guest/runtime.ts), the same directory
 *    the sandbox driver mounts, mounted read-only at /run/hangar-guest inside
 *    the VM. Nothing the user removes from the computer (its Python above
 *    all) reaches the guest. Beside it, `guest-argv`: the command that starts
 *    the guest, which the VM's boot reads (boot/guest).
 * Both are made with `mkfs.ext4 -d`, which copies owners, modes, xattrs and
 * hard links, as sparse files in a temp path renamed into place.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DriverError, type ProgressFn } from '../driver.ts';
import { runCommand } from '../sandbox/run-command.ts';
import { BuildOnce, buildPath, publish, removeAbandonedBuilds } from './build-dir.ts';
import { imagesDir } from './paths.ts';
import { ensureGuestRuntime, RUNTIME_MOUNT } from '../../guest/runtime.ts';

/** Bumped when the way images are made changes, so old ones are not reused. */
const IMAGE_RECIPE = 'v1';

/** The file in the guest image that holds the guest's command (words without spaces). */
const GUEST_ARGV_FILE = 'guest-argv';

/** The images a VM of a template is made with. */
export interface TemplateImages {
  base: string;
  guest: string;
}

export async function ensureTemplateImages(dataDir: string, templateDir: string, onProgress: ProgressFn): Promise<TemplateImages> {
  return { base: await ensureBaseImage(dataDir, templateDir, onProgress), guest: await ensureGuestImage(dataDir, templateDir, onProgress) };
}

const once = new BuildOnce<string>();

/** The base image of a template root (its directory name carries the recipe hash). */
export function ensureBaseImage(dataDir: string, templateDir: string, onProgress: ProgressFn): Promise<string> {
  const name = path.basename(templateDir);
  if (!/^[a-z0-9-]+$/.test(name)) throw new DriverError('FAILED', `unexpected template dir ${JSON.stringify(templateDir)}`);
  const final = path.join(imagesDir(dataDir), `base-${name}-${IMAGE_RECIPE}.img`);
  if (fs.existsSync(final)) return Promise.resolve(final);
  return once.run(final, async () => {
    const started = Date.now();
    onProgress({ phase: 'vm', message: `building the VM image of template ${name}`, fraction: 0 });
    const used = await diskUsage(templateDir);
    // Room for ext4's own metadata, never written to (the image is read-only in every VM).
    await makeImage(final, templateDir, Math.ceil(used * 1.15) + (64 << 20), ['-L', 'hangar-base', '-i', '8192']);
    onProgress({ phase: 'vm', message: `VM image of template ${name} ready in ${Math.round((Date.now() - started) / 100) / 10} s`, fraction: 1 });
    return final;
  });
}

/** The guest image of a template: its guest runtime (made if missing) and the command that starts the guest. */
export async function ensureGuestImage(dataDir: string, templateDir: string, onProgress: ProgressFn): Promise<string> {
  const runtime = await ensureGuestRuntime(templateDir, onProgress);
  // The runtime's directory name carries the template's and the guest code's hashes.
  const final = path.join(imagesDir(dataDir), `guest-${path.basename(runtime.dir)}-${IMAGE_RECIPE}.img`);
  if (fs.existsSync(final)) return final;
  const argv = runtime.guestCommand(RUNTIME_MOUNT);
  if (argv.some((w) => /\s/.test(w))) throw new DriverError('FAILED', `the guest command has a word with a space: ${JSON.stringify(argv)}`);
  return once.run(final, async () => {
    const staging = buildPath(final) + '.d';
    try {
      await runCommand('cp', ['-a', runtime.dir, staging]);
      fs.writeFileSync(path.join(staging, GUEST_ARGV_FILE), argv.join(' ') + '\n');
      const used = await diskUsage(staging);
      await makeImage(final, staging, Math.ceil(used * 1.15) + (16 << 20), ['-L', 'hangar-guest']);
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
    return final;
  });
}

/** A sparse ext4 image of `size` bytes holding a copy of `fromDir`, put at `final` when complete. */
async function makeImage(final: string, fromDir: string, size: number, extra: string[]): Promise<void> {
  const dir = path.dirname(final);
  fs.mkdirSync(dir, { recursive: true });
  removeAbandonedBuilds(dir);
  const tmp = buildPath(final);
  try {
    fs.closeSync(fs.openSync(tmp, 'w'));
    fs.truncateSync(tmp, roundUp(size, 1 << 20));
    // No journal and no reserved blocks: nothing ever writes to these images.
    await runCommand('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'root_owner=0:0', ...extra, '-d', fromDir, tmp], { timeoutMs: 600_000 });
    publish(tmp, final);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err instanceof DriverError ? err : new DriverError('FAILED', `making ${path.basename(final)} failed: ${(err as Error).message}`);
  }
}

async function diskUsage(dir: string): Promise<number> {
  const out = await runCommand('du', ['-s', '--block-size=1', '-x', dir], { timeoutMs: 300_000 });
  const bytes = Number(out.trim().split(/\s+/)[0]);
  if (!Number.isFinite(bytes) || bytes <= 0) throw new DriverError('FAILED', `cannot measure ${dir}`);
  return bytes;
}

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;
