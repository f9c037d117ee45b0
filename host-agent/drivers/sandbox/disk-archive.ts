/**
 * A computer's disk as one archive, for moving it to another host: GNU tar of
 * its meta.json and its disk image (as member `disk.img`), sparse, so the
 * image's holes cost nothing in transit or on the other side. The image keeps
 * everything the overlay needs (owners, modes, xattrs, whiteouts) inside it.
 * Archives of the old layout (an `upper` dir instead of an image) are still
 * taken: that disk is converted at its first boot here (legacy-disk.ts).
 *
 * An import unpacks into a temp dir next to the disk images, checks what it
 * brought (only those members, a regular-file image, a meta for this computer
 * on a template this host has), and is moved into place; until then list()
 * does not see it, and a crash leaves only a temp dir that
 * removeAbandonedDisks clears.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DriverError, type DiskExport } from '../driver.ts';
import { computerPaths, computersDir, disksDir, templatesDir, type ComputerPaths } from './paths.ts';
import type { ComputerMeta } from './disk.ts';
import { runCommand } from './run-command.ts';

const KEEP = ['--xattrs', '--xattrs-include=*', '--acls', '--numeric-owner'];

/** meta.json as another host wrote it: checked, not trusted. */
const ArchivedMeta = z.object({
  id: z.string(),
  name: z.string(),
  hostname: z.string().max(63),
  template_dir: z.string().min(1),
  vcpus: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  disk_gb: z.number().int().positive().max(65_536).optional(),
  apps_installed: z.array(z.string()),
  created_at: z.string(),
});

/** Starts tar reading the disk of a stopped computer; its stdout is the archive. */
export function readArchive(paths: ComputerPaths): DiskExport {
  const args = ['--sparse', '--format=posix', '-C', paths.dir, '-cf', '-', 'meta.json'];
  if (fs.existsSync(paths.image)) {
    const name = path.basename(paths.image);
    args.push('-C', path.dirname(paths.image), `--transform=s,^${name.replace(/\./g, '\\.')}$,disk.img,`, name);
  } else {
    args.unshift(...KEEP);
    args.push('upper'); // a disk of the old layout, never booted since
  }
  const child = spawn('tar', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const done = exited(child, 'reading the disk');
  return { stream: child.stdout!, done, cancel: () => child.kill('SIGKILL') };
}

/** An archive being unpacked into a temp dir, to become computer `id`'s disk. */
export class ArchiveWriter {
  private readonly dataDir: string;
  private readonly id: string;
  private readonly tmp: string;
  private readonly child: ChildProcess;
  private readonly done: Promise<void>;

  constructor(dataDir: string, id: string) {
    this.dataDir = dataDir;
    this.id = id;
    // Next to the images, so the image is renamed (not copied) into place.
    const parent = disksDir(dataDir);
    fs.mkdirSync(parent, { recursive: true });
    this.tmp = path.join(parent, `.import-${id}-${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(this.tmp, { mode: 0o700 });
    // GNU tar refuses absolute names and `..` on its own; what else the archive holds is checked at commit.
    this.child = spawn('tar', [...KEEP, '--same-owner', '--same-permissions', '-C', this.tmp, '-xf', '-'], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    this.child.stdin!.on('error', () => undefined); // a tar that died is reported by `done`
    this.done = exited(this.child, 'unpacking the disk');
  }

  write(chunk: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.child.stdin!.write(chunk, (err) => (err ? reject(new DriverError('FAILED', `unpacking the disk failed: ${err.message}`)) : resolve()));
    });
  }

  /** Waits for tar, checks what it unpacked, points the meta at this host's template and moves the disk into place. */
  async commit(): Promise<void> {
    try {
      this.child.stdin!.end();
      await this.done;
      const meta = this.checkedMeta();
      const members = fs.readdirSync(this.tmp).sort();
      const image = path.join(this.tmp, 'disk.img');
      const legacy = path.join(this.tmp, 'upper');
      const kind = (p: string) => fs.lstatSync(p, { throwIfNoEntry: false });
      let layout: 'image' | 'legacy';
      if (members.join(',') === 'disk.img,meta.json' && kind(image)?.isFile()) layout = 'image';
      else if (members.join(',') === 'meta.json,upper' && kind(legacy)?.isDirectory()) layout = 'legacy';
      else throw new DriverError('FAILED', `the disk archive holds ${members.join(', ') || 'nothing'}, not meta.json and a disk`);
      // The image came from another host: the kernel mounts it only once e2fsck finds it sound
      // (exit codes 0-3: clean or fixed; 4 and up: errors left).
      if (layout === 'image') await checkImage(image);
      const target = computerPaths(this.dataDir, this.id);
      if (fs.existsSync(target.dir)) throw new DriverError('FAILED', `computer ${this.id} already has a disk on this host`);
      const staged = path.join(computersDir(this.dataDir), `.${this.id}.tmp-${randomBytes(4).toString('hex')}`);
      fs.mkdirSync(staged, { recursive: true, mode: 0o700 });
      try {
        fs.mkdirSync(path.join(staged, 'run'));
        fs.writeFileSync(path.join(staged, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
        // The old layout's upper dir belongs in the computer's dir (mv copies it across file systems).
        if (layout === 'legacy') await runCommand('mv', [legacy, path.join(staged, 'upper')]);
        else fs.renameSync(image, target.image);
        fs.renameSync(staged, target.dir);
      } catch (err) {
        fs.rmSync(staged, { recursive: true, force: true });
        if (layout === 'image') fs.rmSync(target.image, { force: true });
        throw err;
      }
      fs.rmSync(this.tmp, { recursive: true, force: true });
    } catch (err) {
      await this.abort();
      throw err instanceof DriverError ? err : new DriverError('FAILED', `placing the disk failed: ${(err as Error).message}`);
    }
  }

  async abort(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.done.catch(() => undefined);
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }

  /** The archive's meta, for this computer, on this host's copy of the template it was made on. */
  private checkedMeta(): ComputerMeta {
    let raw: unknown;
    const file = path.join(this.tmp, 'meta.json');
    try {
      if (!fs.lstatSync(file).isFile()) throw new Error('not a file');
      raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch {
      throw new DriverError('FAILED', 'the disk archive has no readable meta.json');
    }
    const parsed = ArchivedMeta.safeParse(raw);
    if (!parsed.success) throw new DriverError('FAILED', `the disk archive's meta.json is malformed: ${parsed.error.issues[0]?.message}`);
    const meta = parsed.data;
    if (meta.id !== this.id) throw new DriverError('FAILED', `the disk archive is of computer ${meta.id}, not ${this.id}`);
    // The disk only makes sense over the very root it was made on: the same recipe hash, here.
    const name = path.basename(meta.template_dir);
    const local = path.join(templatesDir(this.dataDir), name);
    if (!/^[a-z0-9-]+$/.test(name) || !fs.existsSync(path.join(local, 'etc/hangar-template.json'))) {
      throw new DriverError('FAILED', `this host has no template ${name}, the one the computer's disk was made on`);
    }
    return { ...meta, template_dir: local };
  }
}

async function checkImage(image: string): Promise<void> {
  const code = await new Promise<number>((resolve) => {
    const child = spawn('e2fsck', ['-f', '-p', image], { stdio: 'ignore' });
    child.on('error', () => resolve(8));
    child.on('close', (c) => resolve(c ?? 8));
  });
  if (code >= 4) throw new DriverError('FAILED', `the disk archive's image is not a sound ext4 file system (e2fsck exit ${code})`);
}

function exited(child: ChildProcess, what: string): Promise<void> {
  let output = '';
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (e) => reject(new DriverError('FAILED', `${what} failed: tar could not start: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new DriverError('FAILED', `${what} failed (tar ${signal ?? `exit ${code}`}): ${output.trim().split('\n').slice(-4).join(' | ')}`));
    });
  });
  done.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection
  return done;
}
