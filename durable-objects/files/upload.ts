/**
 * POST …/files/upload with multipart/form-data: several files at once, or
 * archives to unpack. Every file part is first written to a staging
 * directory in the computer as it streams; only once the whole body has been
 * read and checked are the files moved to where they go (or the archives
 * unpacked), so a body that breaks off or is malformed halfway changes
 * nothing. Form fields: `path` (where to), `extract` (true: unpack archives).
 */
import { fail, ok, type Result } from '../../schema/errors.ts';
import type { FsStat } from '../../schema/guest.ts';
import type { AgentLink } from '../agent-link.ts';
import type { StreamTags } from '../relay/relay-stream.ts';
import { fileOp } from './file-ops.ts';
import type { FileTransfers } from './file-transfers.ts';
import { MultipartError, parseMultipart, partText } from './multipart.ts';

export interface UploadRequest {
  boundary: string;
  /** `?path=`; a `path` form field overrides it. */
  path?: string;
  extract: boolean;
  maxBytes: number;
  tags?: StreamTags;
}

export interface Uploaded {
  files: FsStat[];
  extracted: { path: string; entries: number }[];
}

interface Staged {
  filename: string;
  staged: string;
}

/** A file part's name as a relative path: no absolute start, no `..`; subdirectories kept. */
export function cleanName(filename: string, n: number): string | null {
  const parts = filename.replaceAll('\\', '/').split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..') || parts.some((p) => p.includes('\0'))) return null;
  return parts.length ? parts.join('/') : `upload-${n}`;
}

export async function upload(link: AgentLink, transfers: FileTransfers, body: ReadableStream<Uint8Array>, req: UploadRequest): Promise<Result<Uploaded>> {
  const staging = `/tmp/.hangar-upload-${crypto.randomUUID().slice(0, 8)}`;
  const staged: Staged[] = [];
  let dest = req.path;
  let extract = req.extract;
  let left = req.maxBytes;
  try {
    let n = 0;
    for await (const part of parseMultipart(body, req.boundary)) {
      if (part.filename === null) {
        const value = await partText(part);
        if (part.name === 'path') dest = value;
        else if (part.name === 'extract') extract = value === 'true' || value === '1';
        continue;
      }
      const name = cleanName(part.filename, ++n);
      if (name === null) {
        await part.body.cancel();
        return fail('VALIDATION_FAILED', `file name ${JSON.stringify(part.filename)} goes out of its directory`);
      }
      const counted = countBytes(part.body, (bytes) => (left -= bytes));
      const written = await transfers.write(`${staging}/${n}`, counted, Math.max(0, left + 1), req.tags);
      if (!written.ok) return written.code === 'PAYLOAD_TOO_LARGE' ? fail('PAYLOAD_TOO_LARGE', `the upload is larger than ${req.maxBytes} bytes`) : written;
      if (left < 0) return fail('PAYLOAD_TOO_LARGE', `the upload is larger than ${req.maxBytes} bytes`);
      staged.push({ filename: name, staged: `${staging}/${n}` });
    }
    if (staged.length === 0) return fail('VALIDATION_FAILED', 'the form has no file in it (send each file as a part with a filename)');
    return extract ? await unpackAll(link, staged, dest ?? '~') : await place(link, staged, dest);
  } catch (err) {
    if (err instanceof MultipartError) return fail('VALIDATION_FAILED', `the multipart body is malformed: ${err.message}; nothing was changed`);
    throw err;
  } finally {
    await fileOp(link, { op: 'delete', path: staging, recursive: true });
  }
}

/** Moves staged files where they go: one file to `path` itself (unless it is a directory or ends with "/"), else each into the directory `path`. */
async function place(link: AgentLink, staged: Staged[], path: string | undefined): Promise<Result<Uploaded>> {
  let dir = path ?? '~';
  if (staged.length === 1 && path !== undefined && !path.endsWith('/')) {
    const st = await fileOp(link, { op: 'stat', path, follow: true });
    if (!st.ok || !st.value.is_dir) {
      const moved = await fileOp(link, { op: 'rename', from: staged[0].staged, to: path });
      return moved.ok ? ok({ files: [moved.value], extracted: [] }) : moved;
    }
  }
  dir = dir.replace(/\/+$/, '') || '/';
  const files: FsStat[] = [];
  for (const s of staged) {
    const moved = await fileOp(link, { op: 'rename', from: s.staged, to: `${dir === '/' ? '' : dir}/${s.filename}` });
    if (!moved.ok) return moved;
    files.push(moved.value);
  }
  return ok({ files, extracted: [] });
}

async function unpackAll(link: AgentLink, staged: Staged[], dest: string): Promise<Result<Uploaded>> {
  const extracted: { path: string; entries: number }[] = [];
  for (const s of staged) {
    const r = await fileOp(link, { op: 'unpack', path: dest, source: s.staged, format: formatOf(s.filename) });
    if (!r.ok) return r;
    extracted.push(r.value);
  }
  return ok({ files: [], extracted });
}

/** The archive format a file name says (the guest looks at the bytes when it says nothing). */
export function formatOf(name: string): 'auto' | 'tar' | 'tar.gz' | 'zip' {
  const n = name.toLowerCase();
  if (n.endsWith('.zip')) return 'zip';
  if (n.endsWith('.tar.gz') || n.endsWith('.tgz')) return 'tar.gz';
  if (n.endsWith('.tar')) return 'tar';
  return 'auto';
}

/** `body` as it is, telling `count` of each chunk's size as it passes. */
function countBytes(body: ReadableStream<Uint8Array>, count: (bytes: number) => void): ReadableStream<Uint8Array> {
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        count(chunk.byteLength);
        controller.enqueue(chunk);
      },
    }),
  );
}
