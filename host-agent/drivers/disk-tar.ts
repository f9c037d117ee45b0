/**
 * What moving a disk between hosts does the same way for every driver: GNU
 * tar writing an archive to a stream, tar unpacking one into a private temp
 * dir, and the checks an unpacked meta.json passes before it is believed (it
 * came from another host: checked, not trusted). The drivers differ in what
 * the archive holds and where it lands, not in this.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { DriverError, type DiskExport } from './driver.ts';
import { templatesDir } from './sandbox/paths.ts';

/** Starts tar with `args` (which write the archive to stdout); its stdout is the archive. */
export function tarOut(args: string[]): DiskExport {
  const child = spawn('tar', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const done = exited(child, 'reading the disk');
  return { stream: child.stdout!, done, cancel: () => child.kill('SIGKILL') };
}

/** tar unpacking what is written to it into a temp dir of its own, made under `parent`. */
export class TarUnpack {
  /** Where the archive's members land. */
  readonly dir: string;
  private readonly child: ChildProcess;
  private readonly done: Promise<void>;

  /** `args`: tar's options before `-C <dir> -xf -`; `members`: only these, when given. */
  constructor(parent: string, prefix: string, args: string[], members: string[] = []) {
    fs.mkdirSync(parent, { recursive: true });
    this.dir = path.join(parent, `${prefix}${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(this.dir, { mode: 0o700 });
    // GNU tar refuses absolute names and `..` on its own; what else the archive holds is the caller's to check.
    this.child = spawn('tar', [...args, '-C', this.dir, '-xf', '-', ...members], { stdio: ['pipe', 'ignore', 'pipe'] });
    this.child.stdin!.on('error', () => undefined); // a tar that died is reported by `done`
    this.done = exited(this.child, 'unpacking the disk');
  }

  write(chunk: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.child.stdin!.write(chunk, (err) => (err ? reject(new DriverError('FAILED', `unpacking the disk failed: ${err.message}`)) : resolve()));
    });
  }

  /** The end of the archive: resolves once tar has unpacked all of it. */
  async finish(): Promise<void> {
    this.child.stdin!.end();
    await this.done;
  }

  /** Stops tar and removes what it unpacked. */
  async abort(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.done.catch(() => undefined);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The unpacked meta.json in `dir`, as `schema` says, of computer `id`; a DriverError saying what is wrong otherwise. */
export function archivedMeta<T extends { id: string }>(dir: string, schema: z.ZodType<T>, id: string): T {
  let raw: unknown;
  const file = path.join(dir, 'meta.json');
  try {
    if (!fs.lstatSync(file).isFile()) throw new Error('not a file');
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    throw new DriverError('FAILED', 'the disk archive has no readable meta.json');
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new DriverError('FAILED', `the disk archive's meta.json is malformed: ${parsed.error.issues[0]?.message}`);
  if (parsed.data.id !== id) throw new DriverError('FAILED', `the disk archive is of computer ${parsed.data.id}, not ${id}`);
  return parsed.data;
}

/**
 * This host's copy of the template an archived disk was made on (its
 * `template_dir` from another host): a disk only makes sense over the very
 * root it was made on, the same recipe hash, here.
 */
export function localTemplate(dataDir: string, archivedTemplateDir: string): string {
  const name = path.basename(archivedTemplateDir);
  const local = path.join(templatesDir(dataDir), name);
  if (!/^[a-z0-9-]+$/.test(name) || !fs.existsSync(path.join(local, 'etc/hangar-template.json'))) {
    throw new DriverError('FAILED', `this host has no template ${name}, the one the computer's disk was made on`);
  }
  return local;
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
