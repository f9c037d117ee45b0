/** Files as the API shows them (issue 11's shapes): ISO times, the page's field names. */
import type { FsEntry, FsListing, FsStat } from '../../schema/guest.ts';
import { isoNow } from '../http/ids.ts';

const iso = (seconds: number) => isoNow(Math.round(seconds * 1000));

/** POST /files/stat and what mkdir, rename, copy and chmod answer: lstat, `mode` with its file-type bits. */
export function statView(s: FsStat) {
  return {
    path: s.path,
    size: s.size,
    mode: s.mode,
    is_dir: s.is_dir,
    is_symlink: s.is_symlink,
    ...(s.symlink_target !== undefined && { symlink_target: s.symlink_target }),
    modified_at: iso(s.modified_at),
    uid: s.uid,
    gid: s.gid,
  };
}

/** An entry of GET /files (and what POST /files/write answers). */
export const entryView = (e: Pick<FsEntry, 'name' | 'path' | 'size' | 'is_dir' | 'modified_at'>) => ({
  name: e.name,
  path: e.path,
  size: e.size,
  is_dir: e.is_dir,
  modified_at: iso(e.modified_at),
});

/** An entry of GET /files/readdir. */
export const direntView = (e: FsEntry) => ({ name: e.name, is_dir: e.is_dir, is_symlink: e.is_symlink, size: e.size, modified_at: iso(e.modified_at) });

/** Where the next page of a cut listing starts, when it was cut. */
export const nextAfter = (l: FsListing) => (l.truncated && l.entries.length ? l.entries[l.entries.length - 1].name : null);
