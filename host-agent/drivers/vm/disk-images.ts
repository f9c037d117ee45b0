/**
 * The read-only disks every VM of a host shares:
 *  - the base image of a template: an ext4 image of the very template root
 *    the sandbox driver uses as its overlay's lower dir, built once per
 *    template (a few seconds) and attached read-only to every VM made from it;
 *  - the guest image: the guest agent's code (and, once it has one, its own
 *    runtime), mounted read-only at /run/hangar-guest inside the VM.
 * Both are made with `mkfs.ext4 -d`, which copies owners, modes, xattrs and
 * hard links, as sparse files in a temp path renamed into place.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DriverError, type ProgressFn } from '../driver.ts';
import { runCommand } from '../sandbox/run-command.ts';
import { BuildOnce, buildPath, publish, removeAbandonedBuilds } from './build-dir.ts';
import { imagesDir } from './paths.ts';

/** Bumped when the way images are made changes, so old ones are not reused. */
const IMAGE_RECIPE = 'v1';

const GUEST_DIR = fileURLToPath(new URL('../../guest/', import.meta.url));

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

/** The guest image: the guest agent (host-agent/guest, run as a directory). */
export function ensureGuestImage(dataDir: string): Promise<string> {
  const files = listFiles(GUEST_DIR, '');
  const hash = createHash('sha256').update(IMAGE_RECIPE);
  for (const f of files) hash.update(f.rel).update(fs.readFileSync(f.abs));
  const final = path.join(imagesDir(dataDir), `guest-${hash.digest('hex').slice(0, 16)}.img`);
  if (fs.existsSync(final)) return Promise.resolve(final);
  return once.run(final, async () => {
    const staging = buildPath(final) + '.d';
    try {
      for (const f of files) {
        const to = path.join(staging, f.rel);
        fs.mkdirSync(path.dirname(to), { recursive: true });
        fs.copyFileSync(f.abs, to);
      }
      await precompile(staging);
      await makeImage(final, staging, 32 << 20, ['-L', 'hangar-guest']);
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

/**
 * Bytecode for the guest's modules, made by the host's Python: the guest's disk is read-only,
 * so without it the guest would compile its source at every start (slow under emulation). A
 * Python of another version in the computer ignores these files and compiles as before.
 */
async function precompile(dir: string): Promise<void> {
  await runCommand('python3', ['-m', 'compileall', '-q', '--invalidation-mode', 'unchecked-hash', dir], { timeoutMs: 120_000 }).catch(() => undefined);
}

async function diskUsage(dir: string): Promise<number> {
  const out = await runCommand('du', ['-s', '--block-size=1', '-x', dir], { timeoutMs: 300_000 });
  const bytes = Number(out.trim().split(/\s+/)[0]);
  if (!Number.isFinite(bytes) || bytes <= 0) throw new DriverError('FAILED', `cannot measure ${dir}`);
  return bytes;
}

function listFiles(root: string, rel: string): Array<{ rel: string; abs: string }> {
  const out: Array<{ rel: string; abs: string }> = [];
  for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name === '__pycache__') continue;
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...listFiles(root, r));
    else if (e.isFile()) out.push({ rel: r, abs: path.join(root, r) });
  }
  return out;
}

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;
