/**
 * Files on the machine (host mode), as the agent's user may touch them: the
 * machine's own permissions apply (EACCES is "permission denied", never
 * worked around). Relative paths are taken from the user's home. With
 * --fs-root the operator confines file access to one tree: a path (after
 * resolving symlinks, so a link cannot lead out) outside it is refused as a
 * permission error.
 */
import { randomBytes } from 'node:crypto';
import { constants, createReadStream, createWriteStream, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { Duplex, Readable, Writable } from 'node:stream';
import type { FsEntry } from '../../schema/protocol.ts';
import type { RelayTarget } from '../../schema/relay.ts';
import { DriverError } from '../drivers/driver.ts';
import { RelayTargetError } from '../relay/target-error.ts';

/** Downloads are read in pieces of this size (one relay frame each). */
const READ_CHUNK = 256 * 1024;

/** A listing stops (truncated) before its result would pass this many characters: one message carries it. */
const LIST_MAX_CHARS = 768 * 1024;

/** The protocol's error for a failed file operation. */
export function fsError(err: unknown, p: string): DriverError {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof DriverError) return err;
  switch (e.code) {
    case 'ENOENT':
      return new DriverError('NO_SUCH_PATH', `no such file or directory: ${p}`);
    case 'EACCES':
    case 'EPERM':
      return new DriverError('PERMISSION_DENIED', `permission denied: ${p}`);
    case 'ENOTEMPTY':
    case 'EEXIST':
      return new DriverError('CONFLICT', e.code === 'ENOTEMPTY' ? `directory not empty: ${p} (delete it with recursive=true)` : `already exists and is not a directory: ${p}`);
    case 'ENOTDIR':
      return new DriverError('NO_SUCH_PATH', `not a directory: ${p}`);
    case 'EISDIR':
      return new DriverError('CONFLICT', `is a directory: ${p}`);
    default:
      return new DriverError('FAILED', `${p}: ${e.message ?? String(err)}`);
  }
}

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

export class HostFs {
  private readonly home: string;
  /** Absolute and real (symlinks resolved); null: no confinement. */
  private readonly root: string | null;

  constructor(home: string, root: string | null) {
    this.home = home;
    this.root = root;
  }

  /** The absolute path a request means, checked against the root. */
  async resolve(p: string): Promise<string> {
    if (p.includes('\0')) throw new DriverError('BAD_REQUEST', 'path must not contain NUL characters');
    const abs = path.resolve(this.home, p);
    if (!(await this.inside(abs))) throw new DriverError('PERMISSION_DENIED', `${abs} is outside the directory this agent serves files from`);
    return abs;
  }

  /** Whether `abs`, symlinks resolved, lies in the served tree (always, without --fs-root). */
  private async inside(abs: string): Promise<boolean> {
    if (this.root === null) return true;
    const real = await this.realOfNearest(abs);
    return real === this.root || real.startsWith(this.root.endsWith(path.sep) ? this.root : this.root + path.sep);
  }

  async list(p: string): Promise<{ path: string; entries: FsEntry[]; truncated: boolean }> {
    const dir = await this.resolve(p);
    try {
      const names = (await fsp.readdir(dir)).sort();
      const entries: FsEntry[] = [];
      let chars = 0;
      for (const name of names) {
        const entry = await this.entry(path.join(dir, name)).catch(() => null); // gone meanwhile
        if (!entry) continue;
        chars += JSON.stringify(entry).length + 1;
        if (chars > LIST_MAX_CHARS) return { path: dir, entries, truncated: true };
        entries.push(entry);
      }
      return { path: dir, entries, truncated: false };
    } catch (err) {
      throw fsError(err, dir);
    }
  }

  async stat(p: string): Promise<FsEntry> {
    const abs = await this.resolve(p);
    try {
      return await this.entry(abs);
    } catch (err) {
      throw fsError(err, abs);
    }
  }

  /** Makes a directory and its missing parents; an existing directory is fine. */
  async mkdir(p: string): Promise<{ path: string }> {
    const abs = await this.resolve(p);
    try {
      await fsp.mkdir(abs, { recursive: true });
      if (!(await fsp.stat(abs)).isDirectory()) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
      return { path: abs };
    } catch (err) {
      throw fsError(err, abs);
    }
  }

  /** Deletes a file, a link, an empty directory, or (recursive) a whole tree. */
  async delete(p: string, recursive: boolean): Promise<{ path: string }> {
    const abs = await this.resolve(p);
    if (this.root !== null && abs === this.root) throw new DriverError('PERMISSION_DENIED', 'the directory this agent serves files from cannot itself be deleted');
    try {
      const st = await fsp.lstat(abs);
      if (!st.isDirectory()) await fsp.unlink(abs);
      else if (recursive) await fsp.rm(abs, { recursive: true });
      else await fsp.rmdir(abs);
      return { path: abs };
    } catch (err) {
      throw fsError(err, abs);
    }
  }

  /**
   * Checks a file can travel: read (a file the user may read), or written (a
   * directory to put it in, made with its parents when missing; a path that
   * is a directory takes the file under `filename`). Answers the absolute path.
   */
  async prepare(p: string, mode: 'read' | 'write', filename?: string): Promise<{ path: string; size: number; modified_at: string | null }> {
    let abs = await this.resolve(p);
    try {
      if (mode === 'read') {
        const st = await fsp.stat(abs);
        if (st.isDirectory()) throw Object.assign(new Error('dir'), { code: 'EISDIR' });
        await fsp.access(abs, constants.R_OK);
        return { path: abs, size: st.size, modified_at: iso(st.mtime) };
      }
      const existing = await fsp.stat(abs).catch(() => null);
      if (existing?.isDirectory()) {
        if (!filename || filename.includes('/') || filename.includes('\\') || filename === '.' || filename === '..') throw Object.assign(new Error('dir'), { code: 'EISDIR' });
        abs = await this.resolve(path.join(abs, filename));
      }
      await fsp.mkdir(path.dirname(abs), { recursive: true });
      await fsp.access(path.dirname(abs), constants.W_OK);
      const st = await fsp.stat(abs).catch(() => null);
      if (st?.isDirectory()) throw Object.assign(new Error('dir'), { code: 'EISDIR' });
      return { path: abs, size: st?.size ?? 0, modified_at: st ? iso(st.mtime) : null };
    } catch (err) {
      throw fsError(err, abs);
    }
  }

  /** Opener for `host_file` relay targets: a file read out, or written in and put in place at the end. */
  async openStream(target: Extract<RelayTarget, { kind: 'host_file' }>): Promise<Duplex> {
    const abs = await this.resolve(target.path).catch((e: Error) => {
      throw new RelayTargetError('refused', e.message);
    });
    if (target.mode === 'read') {
      const start = target.start ?? 0;
      if (target.length === 0) return Duplex.from({ readable: Readable.from([]), writable: discard() });
      const end = target.length === undefined ? undefined : start + target.length - 1;
      const file = createReadStream(abs, { start, end, highWaterMark: READ_CHUNK });
      await new Promise<void>((resolve, reject) => {
        file.once('open', () => resolve());
        file.once('error', (err) => reject(new RelayTargetError('refused', fsError(err, abs).message)));
      });
      return Duplex.from({ readable: file, writable: discard() });
    }
    return newFileWriter(abs);
  }

  private async entry(abs: string): Promise<FsEntry> {
    const l = await fsp.lstat(abs);
    let target: string | null = null;
    let st: Stats = l;
    if (l.isSymbolicLink()) {
      target = await fsp.readlink(abs).catch(() => null);
      // A link is described by its target, unless that is outside the served tree (or gone): then by itself.
      if (await this.inside(abs)) st = await fsp.stat(abs).catch(() => l);
    }
    return {
      name: path.basename(abs),
      path: abs,
      size: st.isDirectory() ? 0 : st.size,
      is_dir: st.isDirectory(),
      modified_at: iso(st.mtime),
      mode: st.mode & 0o7777,
      is_symlink: l.isSymbolicLink(),
      symlink_target: target,
    };
  }

  /** The real path of `abs`, or of its nearest existing parent with the rest appended (for paths yet to be made). */
  private async realOfNearest(abs: string): Promise<string> {
    let rest = '';
    for (let p = abs; ; p = path.dirname(p)) {
      try {
        return path.join(await fsp.realpath(p), rest);
      } catch {
        if (path.dirname(p) === p) return abs;
        rest = path.join(path.basename(p), rest);
      }
    }
  }
}

/** A writable that takes and drops whatever it is given (the object sends nothing on a download). */
function discard(): Writable {
  return new Writable({ write: (_chunk, _enc, done) => done() });
}

/**
 * The new content of `abs`: written to a temporary file beside it, put in
 * place by a rename once every byte is in (a reader never sees half a file),
 * and answered with one JSON line; dropped if the stream is reset first.
 */
async function newFileWriter(abs: string): Promise<Duplex> {
  const tmp = path.join(path.dirname(abs), `.${path.basename(abs)}.hangar-${randomBytes(6).toString('hex')}`);
  const file = createWriteStream(tmp, { flags: 'wx' });
  await new Promise<void>((resolve, reject) => {
    file.once('open', () => resolve());
    file.once('error', (err) => reject(new RelayTargetError('refused', fsError(err, abs).message)));
  });
  let bytes = 0;
  let placed = false;
  return new Duplex({
    write(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      file.write(chunk, done);
    },
    final(done) {
      file.end(() => {
        fsp.rename(tmp, abs).then(
          () => {
            placed = true;
            this.push(`${JSON.stringify({ path: abs, bytes })}\n`);
            this.push(null);
            done();
          },
          (err: unknown) => done(fsError(err, abs)),
        );
      });
    },
    read() {},
    destroy(err, done) {
      if (placed) return done(err);
      file.destroy();
      fsp.unlink(tmp).then(
        () => done(err),
        () => done(err),
      );
    },
  });
}
