/**
 * A VM computer's disk as one archive, for moving it to another host: GNU
 * tar of disk.img (sparse: holes are not sent) and meta.json. The template's
 * base image is not in it — the target builds its own from the same template
 * recipe — so a move ships only what the computer itself wrote.
 *
 * An import unpacks into a temp dir beside the disks, checks the meta it
 * brought, points it at this host's copy of the same template, and is renamed
 * into place; until then list() does not see it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DriverError, type DiskExport } from '../driver.ts';
import { templatesDir } from '../sandbox/paths.ts';
import type { VmMeta } from './disk.ts';
import { vmComputersDir, vmPaths, type VmPaths } from './paths.ts';

const MEMBERS = ['disk.img', 'meta.json'];

/** meta.json as another host wrote it: checked, not trusted. */
const ArchivedMeta = z.object({
  id: z.string(),
  name: z.string(),
  hostname: z.string().max(63),
  template_dir: z.string().min(1),
  vcpus: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  disk_mb: z.number().int().positive(),
  apps_installed: z.array(z.string()),
  created_at: z.string(),
});

/** Starts tar reading the disk of a stopped VM computer; its stdout is the archive. */
export function readArchive(paths: VmPaths): DiskExport {
  const child = spawn('tar', ['--sparse', '--format=posix', '-C', paths.dir, '-cf', '-', ...MEMBERS], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    const parent = vmComputersDir(dataDir);
    fs.mkdirSync(parent, { recursive: true });
    this.tmp = path.join(parent, `.${id}.tmp-${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(this.tmp, { mode: 0o700 });
    // Only these members; GNU tar refuses absolute names and `..` on its own.
    this.child = spawn('tar', ['--no-same-owner', '-C', this.tmp, '-xf', '-', ...MEMBERS], { stdio: ['pipe', 'ignore', 'pipe'] });
    this.child.stdin!.on('error', () => undefined); // a tar that died is reported by `done`
    this.done = exited(this.child, 'unpacking the disk');
  }

  write(chunk: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.child.stdin!.write(chunk, (err) => (err ? reject(new DriverError('FAILED', `unpacking the disk failed: ${err.message}`)) : resolve()));
    });
  }

  /** Waits for tar, checks the meta and the image, points it at this host's template and renames the disk into place. */
  async commit(): Promise<void> {
    try {
      this.child.stdin!.end();
      await this.done;
      const meta = this.checkedMeta();
      fs.writeFileSync(path.join(this.tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
      const target = vmPaths(this.dataDir, this.id).dir;
      if (fs.existsSync(target)) throw new DriverError('FAILED', `computer ${this.id} already has a disk on this host`);
      fs.renameSync(this.tmp, target);
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

  private checkedMeta(): VmMeta {
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(path.join(this.tmp, 'meta.json'), 'utf8'));
    } catch {
      throw new DriverError('FAILED', 'the disk archive has no readable meta.json');
    }
    const parsed = ArchivedMeta.safeParse(raw);
    if (!parsed.success) throw new DriverError('FAILED', `the disk archive's meta.json is malformed: ${parsed.error.issues[0]?.message}`);
    const meta = parsed.data;
    if (meta.id !== this.id) throw new DriverError('FAILED', `the disk archive is of computer ${meta.id}, not ${this.id}`);
    const image = fs.statSync(path.join(this.tmp, 'disk.img'), { throwIfNoEntry: false });
    if (!image?.isFile() || image.size !== meta.disk_mb * 1024 * 1024) throw new DriverError('FAILED', 'the disk archive has no disk image of the size its meta says');
    // The upper dir only makes sense over the very root it was made on: the same recipe hash, here.
    const name = path.basename(meta.template_dir);
    const local = path.join(templatesDir(this.dataDir), name);
    if (!/^[a-z0-9-]+$/.test(name) || !fs.existsSync(path.join(local, 'etc/hangar-template.json'))) {
      throw new DriverError('FAILED', `this host has no template ${name}, the one the computer's disk was made on`);
    }
    return { ...meta, template_dir: local };
  }
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
