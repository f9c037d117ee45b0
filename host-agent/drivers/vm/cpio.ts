/** Writes "newc" cpio archives, the format Linux unpacks as an initramfs. */

export type CpioEntry =
  | { path: string; type: 'dir'; mode?: number }
  | { path: string; type: 'file'; data: Uint8Array; mode?: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'char'; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/** The archive of `entries` (owned by root, mtime 0, so the same input gives the same bytes). */
export function cpioArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (name: string, mode: number, data: Uint8Array, rdev: [number, number] = [0, 0]) => {
    const nameBytes = Buffer.from(`${name}\0`);
    const fields = [ino++, mode, 0, 0, (mode & 0o170000) === S_IFDIR ? 2 : 1, 0, data.byteLength, 0, 0, rdev[0], rdev[1], nameBytes.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'ascii');
    parts.push(header, nameBytes, pad(header.length + nameBytes.length), Buffer.from(data), pad(data.byteLength));
  };
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    if (e.type === 'dir') push(name, S_IFDIR | (e.mode ?? 0o755), new Uint8Array());
    else if (e.type === 'file') push(name, S_IFREG | (e.mode ?? 0o644), e.data);
    else if (e.type === 'symlink') push(name, S_IFLNK | 0o777, Buffer.from(e.target));
    else push(name, S_IFCHR | (e.mode ?? 0o600), new Uint8Array(), [e.major, e.minor]);
  }
  push('TRAILER!!!', 0, new Uint8Array());
  return Buffer.concat(parts);
}

const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
