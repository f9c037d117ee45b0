/**
 * Files on a tenant host (spec/05, File System). Listings, stat, mkdir and
 * delete are requests to the agent; downloads and uploads move their bytes
 * over the relay's streams (a `host_file` target), so they are flow
 * controlled end to end and never held whole in the object: a download is
 * the agent's bytes as the response body (Content-Length, single Range), an
 * upload's body (multipart/form-data, or the raw bytes) is written into a
 * stream the agent turns into the file, put in place only once complete.
 */
import { ApiError, fail, ok, type Result } from '../../schema/errors.ts';
import type { FsEntry } from '../../schema/protocol.ts';
import { RELAY_FRAME_BYTES } from '../../schema/relay.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import type { AgentLink } from '../agent-link.ts';
import { pumpInto, readableOf } from '../relay/readable.ts';
import type { StreamReset } from '../relay/relay-stream.ts';
import type { RelayMux } from '../relay/relay-mux.ts';
import { MultipartError, filePart, multipartBoundary } from './multipart.ts';

/** Uploads larger than this are refused with 413 (HOST_UPLOAD_MAX_BYTES overrides it). */
export const UPLOAD_MAX_BYTES = 100 * 1024 * 1024;
/** Room for a multipart envelope around a file of the largest size. */
const ENVELOPE_BYTES = 64 * 1024;

/** The deployment's upload limit. */
export function uploadLimit(env: { HOST_UPLOAD_MAX_BYTES?: string }): number {
  const n = Number(env.HOST_UPLOAD_MAX_BYTES ?? UPLOAD_MAX_BYTES);
  return Number.isSafeInteger(n) && n > 0 ? n : UPLOAD_MAX_BYTES;
}

/** A body that says it is larger than any upload may be (checked before a byte of it is read). */
export const declaredTooLarge = (request: Request, max: number): boolean => Number(request.headers.get('content-length') ?? 0) > max + ENVELOPE_BYTES;
const FS_TIMEOUT_MS = 30_000;
/** Bytes of a download that may wait between the relay and the client. */
const DOWNLOAD_BUFFER_BYTES = 4 * 1024 * 1024;

/** A single byte range of a file of `size` bytes (RFC 9110): null for none (or several: the whole file is sent), 'unsatisfiable' for none inside. */
export function byteRange(header: string | null, size: number): { start: number; length: number } | 'unsatisfiable' | null {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null;
  }
  if (!Number.isSafeInteger(start) || start >= size) return 'unsatisfiable';
  return { start, length: end - start + 1 };
}

/**
 * A request body gathered into pieces of one relay frame: bodies arrive in
 * chunks of a few KiB, and a frame each would make an upload thousands of
 * messages where a few hundred do.
 */
export function inFramePieces(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  let parts: Uint8Array[] = [];
  let size = 0;
  const take = (): Uint8Array => {
    const out = parts.length === 1 ? parts[0] : new Uint8Array(size);
    if (parts.length > 1) {
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.byteLength;
      }
    }
    parts = [];
    size = 0;
    return out;
  };
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        parts.push(chunk);
        size += chunk.byteLength;
        if (size >= RELAY_FRAME_BYTES) controller.enqueue(take());
      },
      flush(controller) {
        if (size > 0) controller.enqueue(take());
      },
    }),
  );
}

/** A file stream the agent could not open after the checks passed (the file changed in between, or the agent went away). */
const failOf = (e: ApiError) => fail(e.code, e.message);

function fileFailure(reset: StreamReset, path: string): ApiError {
  const away = reset.code === 'unreachable' || reset.code === 'unsupported';
  return new ApiError(away ? 'AGENT_UNAVAILABLE' : 'AGENT_ERROR', `${path}: ${reset.message}`);
}

export class HostFiles {
  constructor(
    private readonly link: AgentLink,
    private readonly relay: RelayMux,
    private readonly maxUpload: () => number,
  ) {}

  list(path: string): Promise<Result<{ path: string; entries: FsEntry[]; truncated: boolean }>> {
    return this.link.request('fs.list', { path }, FS_TIMEOUT_MS);
  }

  stat(path: string): Promise<Result<FsEntry>> {
    return this.link.request('fs.stat', { path }, FS_TIMEOUT_MS);
  }

  mkdir(path: string): Promise<Result<{ path: string }>> {
    return this.link.request('fs.mkdir', { path }, FS_TIMEOUT_MS);
  }

  delete(path: string, recursive: boolean): Promise<Result<{ path: string }>> {
    return this.link.request('fs.delete', { path, recursive }, FS_TIMEOUT_MS);
  }

  /**
   * A file's first `maxBytes` as text, for an agent session's read_file: the
   * same prepare-then-relay path a download takes, gathered in the object
   * (bounded by `maxBytes`, never the whole of a large file).
   */
  async readText(path: string, maxBytes: number): Promise<Result<{ path: string; content: string; size: number; truncated: boolean }>> {
    const prepared = await this.link.request('fs.prepare', { path, mode: 'read' }, FS_TIMEOUT_MS);
    if (!prepared.ok) return prepared;
    const { size } = prepared.value;
    const length = Math.min(size, maxBytes);
    if (length === 0) return ok({ path: prepared.value.path, content: '', size, truncated: false });
    const opened = this.relay.open({ kind: 'host_file', path: prepared.value.path, mode: 'read', start: 0, length }, { tags: { kind: 'file' } });
    if (!opened.ok) return opened;
    const refused = await opened.value.accepted;
    if (refused) return failOf(fileFailure(refused, prepared.value.path));
    opened.value.closeWrite();
    try {
      const bytes = new Uint8Array(await new Response(readableOf(opened.value)).arrayBuffer());
      return ok({ path: prepared.value.path, content: new TextDecoder().decode(bytes), size, truncated: size > length });
    } catch (e) {
      return fail('AGENT_UNAVAILABLE', `${prepared.value.path}: ${(e as Error).message}`);
    }
  }

  /** Writes `content` as the file at `path` (parents made, put in place once complete), as an upload does. */
  async writeText(path: string, content: string): Promise<Result<{ path: string; bytes: number }>> {
    const bytes = new TextEncoder().encode(content);
    const prepared = await this.link.request('fs.prepare', { path, mode: 'write' }, FS_TIMEOUT_MS);
    if (!prepared.ok) return prepared;
    const opened = this.relay.open({ kind: 'host_file', path: prepared.value.path, mode: 'write' }, { tags: { kind: 'file' } });
    if (!opened.ok) return opened;
    const stream = opened.value;
    const refused = await stream.accepted;
    if (refused) return failOf(fileFailure(refused, prepared.value.path));
    const pumped = await pumpInto(inFramePieces(new Response(bytes).body!), stream);
    if (pumped.kind !== 'done') {
      stream.reset('closed', 'the write was not completed');
      return fail('AGENT_UNAVAILABLE', `${prepared.value.path}: the connection to the host was lost`);
    }
    try {
      return ok(JSON.parse(await new Response(readableOf(stream)).text()) as { path: string; bytes: number });
    } catch {
      return fail('AGENT_ERROR', `${prepared.value.path}: ${stream.failure?.message ?? 'the agent did not confirm the file'}`);
    }
  }

  /** GET …/fs/download: the file's bytes, streamed, with Content-Length; one Range is served as 206. */
  async download(request: Request, path: string, credentialId: string | null, requestId: string): Promise<Response> {
    const prepared = await this.link.request('fs.prepare', { path, mode: 'read' }, FS_TIMEOUT_MS);
    if (!prepared.ok) return errorResponse(new ApiError(prepared.code, prepared.message), requestId);
    const { size } = prepared.value;
    const range = byteRange(request.headers.get('range'), size);
    if (range === 'unsatisfiable') {
      return errorResponse(new ApiError('RANGE_NOT_SATISFIABLE', `the file has ${size} bytes`, { 'content-range': `bytes */${size}` }), requestId);
    }
    const start = range?.start ?? 0;
    const length = range?.length ?? size;
    const opened = this.relay.open({ kind: 'host_file', path: prepared.value.path, mode: 'read', start, length }, { tags: { credential_id: credentialId, kind: 'file' }, window: 8 * 1024 * 1024 });
    if (!opened.ok) return errorResponse(new ApiError(opened.code, opened.message), requestId);
    const stream = opened.value;
    const refused = await stream.accepted;
    if (refused) return errorResponse(fileFailure(refused, prepared.value.path), requestId);
    stream.closeWrite();
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-length': String(length),
      'accept-ranges': 'bytes',
      'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(prepared.value.path.split('/').pop() ?? 'file')}`,
    };
    if (prepared.value.modified_at) headers['last-modified'] = new Date(prepared.value.modified_at).toUTCString();
    if (range) headers['content-range'] = `bytes ${start}-${start + length - 1}/${size}`;
    // A stream of known length is sent with its Content-Length (not chunked); a few MiB may wait in it, so
    // the next frames come on while the last ones are on their way to the client (one at a time is one round trip each).
    const sized = new FixedLengthStream(length, { highWaterMark: DOWNLOAD_BUFFER_BYTES });
    void readableOf(stream).pipeTo(sized.writable).catch(() => {});
    return new Response(sized.readable, { status: range ? 206 : 200, headers });
  }

  /**
   * POST …/fs/upload: the first file of a multipart/form-data body (or, with
   * another Content-Type, the body itself) becomes the file at `path` (into
   * it, under the part's filename, when `path` is a directory).
   */
  async upload(request: Request, path: string, credentialId: string | null, requestId: string): Promise<Response> {
    const max = this.maxUpload();
    const tooLarge = () => errorResponse(new ApiError('PAYLOAD_TOO_LARGE', `an upload is at most ${max} bytes`), requestId);
    if (declaredTooLarge(request, max)) {
      await request.body?.cancel().catch(() => {});
      return tooLarge();
    }
    if (!request.body) return errorResponse(new ApiError('BAD_REQUEST', 'the upload has no body'), requestId);
    let bytes: ReadableStream<Uint8Array> = request.body;
    let filename: string | undefined;
    const boundary = multipartBoundary(request.headers.get('content-type'));
    if (boundary) {
      try {
        const part = await filePart(request.body, boundary);
        bytes = part.bytes;
        filename = part.filename ?? undefined;
      } catch (err) {
        await request.body.cancel().catch(() => {});
        return errorResponse(new ApiError('BAD_REQUEST', `malformed multipart body: ${(err as Error).message}`), requestId);
      }
    } else if (/^multipart\//i.test(request.headers.get('content-type') ?? '')) {
      await request.body.cancel().catch(() => {});
      return errorResponse(new ApiError('BAD_REQUEST', 'multipart/form-data needs a boundary parameter'), requestId);
    }
    const prepared = await this.link.request('fs.prepare', { path, mode: 'write', ...(filename ? { filename: filename.slice(0, 255) } : {}) }, FS_TIMEOUT_MS);
    if (!prepared.ok) {
      await bytes.cancel().catch(() => {});
      return errorResponse(new ApiError(prepared.code, prepared.message), requestId);
    }
    const opened = this.relay.open({ kind: 'host_file', path: prepared.value.path, mode: 'write' }, { tags: { credential_id: credentialId, kind: 'file' } });
    if (!opened.ok) return errorResponse(new ApiError(opened.code, opened.message), requestId);
    const stream = opened.value;
    const refused = await stream.accepted;
    if (refused) return errorResponse(fileFailure(refused, prepared.value.path), requestId);
    const pumped = await pumpInto(inFramePieces(bytes), stream, max);
    if (pumped.kind !== 'done') {
      stream.reset('closed', 'the upload was refused');
      if (pumped.kind === 'too_large') return tooLarge();
      const why = pumped.kind === 'body_error' ? pumped.message : 'the connection to the host was lost';
      return errorResponse(new ApiError(pumped.kind === 'body_error' ? 'BAD_REQUEST' : 'AGENT_UNAVAILABLE', `the upload did not complete: ${why}`), requestId);
    }
    let answer: { path: string; bytes: number };
    try {
      answer = JSON.parse(await new Response(readableOf(stream)).text()) as { path: string; bytes: number };
    } catch {
      const reason = stream.failure?.message ?? 'the agent did not confirm the file';
      return errorResponse(new ApiError('AGENT_ERROR', `the upload did not complete: ${reason}`), requestId);
    }
    const stat = await this.stat(answer.path);
    return new Response(JSON.stringify(stat.ok ? { ...stat.value, data: stat.value } : { path: answer.path, size: answer.bytes }), {
      status: 201,
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
  }
}
