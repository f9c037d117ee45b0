/**
 * Files on the machine (host mode), as the agent's user may touch them: the
 * machine's own permissions apply (EACCES is "permission denied", never
 * worked around). Relative paths are taken from the user's home. With
 * --fs-root the operator confines file access to one tree: a path (after
 * resolving symlinks, so a link cannot lead out) outside it is refused as a
 * permission error.
 */
import { constants, promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import type { FsEntry } from '../../schema/protocol.ts';
import { DriverError } from '../drivers/driver.ts';

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
    if (this.root !== null) {
      const real = await this.realOfNearest(abs);
      if (real !== this.root && !real.startsWith(this.root.endsWith(path.sep) ? this.root : this.root + path.sep)) {
        throw new DriverError('PERMISSION_DENIED', `${abs} is outside the directory this agent serves files from`);
      }
    }
    return abs;
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

  /** Checks that a file can be read (for downloads). */
  async readable(p: string): Promise<{ path: string; size: number }> {
    const abs = await this.resolve(p);
    try {
      const st = await fsp.stat(abs);
      if (st.isDirectory()) throw Object.assign(new Error('dir'), { code: 'EISDIR' });
      await fsp.access(abs, constants.R_OK);
      return { path: abs, size: st.size };
    } catch (err) {
      throw fsError(err, abs);
    }
  }

  private async entry(abs: string): Promise<FsEntry> {
    const l = await fsp.lstat(abs);
    let target: string | null = null;
    let st: Stats = l;
    if (l.isSymbolicLink()) {
      target = await fsp.readlink(abs).catch(() => null);
      st = await fsp.stat(abs).catch(() => l); // a dangling link shows as itself
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
