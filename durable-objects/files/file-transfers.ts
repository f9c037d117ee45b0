/**
 * Moving a file's bytes in and out of a running computer over the relay
 * (target `computer_file`, docs/relay.md): downloads with Range, writes of a
 * whole file, directories packed as tar.gz, archives unpacked. The object
 * holds no more than a relay window of any transfer: bytes flow between the
 * client's request or response and the agent's stream as each side takes them.
 */
import { ApiError, fail, ok, type ErrorCode, type Result } from '../../schema/errors.ts';
import { FileStreamResult, type FileStream, type FsStat } from '../../schema/guest.ts';
import { isoNow } from '../../worker/http/ids.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import type { AgentLink } from '../agent-link.ts';
import type { RelayMux } from '../relay/relay-mux.ts';
import type { RelayStream, StreamTags } from '../relay/relay-stream.ts';
import { pumpInto, readableOf } from '../relay/readable.ts';
import { relayFailure } from '../relay/failures.ts';
import { agentTooOld } from '../agent-version.ts';
import { FILES_MINOR, fileOp } from './file-ops.ts';
import { attachment, contentTypeOf } from './content-type.ts';
import { coalesced } from './coalesce.ts';
import { parseRange } from './range.ts';
import { PATH_CODES, pathFailure } from './path-errors.ts';

/** A write's or unpack's answer is one short JSON line. */
const MAX_ANSWER = 64 * 1024;

const fromApi = (e: ApiError): Result<never> => fail(e.code, e.message);
const httpDate = (seconds: number) => new Date(Math.round(seconds * 1000)).toUTCString();

export interface Download {
  /** Content-Disposition attachment with the file's name (export links). */
  attachment?: boolean;
  /** The Range header of the request. */
  range?: string | null;
  tags?: StreamTags;
  /** For an error answered here in full (a 416, which carries Content-Range). */
  requestId?: string;
}

export class FileTransfers {
  constructor(
    private readonly relay: RelayMux,
    private readonly link: AgentLink,
  ) {}

  /** The file's bytes (following a symlink), 206 for a satisfiable Range, 416 for one that is not. */
  async download(path: string, opts: Download = {}): Promise<Result<Response>> {
    const st = await fileOp(this.link, { op: 'stat', path, follow: true });
    if (!st.ok) return st;
    const s = st.value;
    if (s.is_dir) return fail('CONFLICT', `${path} is a directory; download it as a tar.gz with POST …/files/export`);
    const range = parseRange(opts.range ?? null, s.size);
    const headers = new Headers({
      'content-type': contentTypeOf(path),
      'accept-ranges': 'bytes',
      'last-modified': httpDate(s.modified_at),
      etag: `"${s.size.toString(16)}-${Math.round(s.modified_at * 1000).toString(16)}"`,
    });
    if (opts.attachment) headers.set('content-disposition', attachment(path.slice(path.lastIndexOf('/') + 1)));
    if (range.kind === 'unsatisfiable') {
      // The envelope, with the file's size in Content-Range as a 416 should have it.
      const refused = new ApiError('RANGE_NOT_SATISFIABLE', `the range ${opts.range} is outside the file's ${s.size} bytes`, { 'content-range': `bytes */${s.size}` });
      return ok(errorResponse(refused, opts.requestId ?? ''));
    }
    const [start, length] = range.kind === 'partial' ? [range.start, range.end - range.start + 1] : [0, s.size];
    headers.set('content-length', String(length));
    if (range.kind === 'partial') headers.set('content-range', `bytes ${range.start}-${range.end}/${s.size}`);
    const status = range.kind === 'partial' ? 206 : 200;
    if (length === 0) return ok(new Response(null, { status, headers }));
    const opened = await this.open({ op: 'read', path, offset: start, length }, opts.tags, path);
    if (!opened.ok) return opened;
    // A body of a known length: sent with Content-Length, and a stream that ends short is an error, not a smaller file.
    const { readable, writable } = new FixedLengthStream(length);
    void readableOf(opened.value).pipeTo(writable).catch(() => {});
    return ok(new Response(readable, { status, headers }));
  }

  /** A directory (or a file) as a tar.gz archive, streamed as it is made. */
  async pack(path: string, opts: Download = {}): Promise<Result<Response>> {
    const st = await fileOp(this.link, { op: 'stat', path, follow: true });
    if (!st.ok) return st;
    const opened = await this.open({ op: 'pack', path }, opts.tags, path);
    if (!opened.ok) return opened;
    const name = (path.replace(/\/+$/, '').slice(path.replace(/\/+$/, '').lastIndexOf('/') + 1) || 'root') + '.tar.gz';
    const headers = new Headers({ 'content-type': 'application/gzip', 'content-disposition': attachment(name), 'last-modified': httpDate(st.value.modified_at) });
    return ok(new Response(readableOf(opened.value), { headers }));
  }

  /** Writes `body` as the whole file at `path` (parents created), replaced only once every byte arrived; its stat after. */
  async write(path: string, body: ReadableStream<Uint8Array> | null, maxBytes: number, tags?: StreamTags): Promise<Result<FsStat>> {
    const done = await this.stream({ op: 'write', path }, body, maxBytes, tags);
    if (!done.ok) return done;
    return fileOp(this.link, { op: 'stat', path });
  }

  /** Unpacks the archive in `body` (tar, tar.gz or zip) into the directory `path`, all or nothing. */
  async unpack(path: string, body: ReadableStream<Uint8Array> | null, format: 'auto' | 'tar' | 'tar.gz' | 'zip', maxBytes: number, tags?: StreamTags): Promise<Result<{ path: string; entries: number }>> {
    const done = await this.stream({ op: 'unpack', path, format }, body, maxBytes, tags);
    return done.ok ? ok({ path: done.value.path, entries: done.value.entries ?? 0 }) : done;
  }

  /** Opens a file stream; its failure to open is an API error. */
  private async open(file: FileStream, tags: StreamTags = {}, path: string): Promise<Result<RelayStream>> {
    const old = agentTooOld(this.link, FILES_MINOR, 'moving files');
    if (old) return old;
    const opened = this.relay.open({ kind: 'computer_file', file }, { tags: { ...tags, kind: 'file' } });
    if (!opened.ok) return opened;
    const refused = await opened.value.accepted;
    if (refused) return fromApi(relayFailure(refused, `${path} in the computer`));
    return opened;
  }

  /**
   * Sends `body` into a write or unpack stream and reads its one-line answer.
   * An answer that comes before the body is all sent is a refusal: the rest is
   * not sent. Past `maxBytes` the stream is broken off (the computer keeps nothing).
   */
  private async stream(file: FileStream, body: ReadableStream<Uint8Array> | null, maxBytes: number, tags?: StreamTags): Promise<Result<Extract<FileStreamResult, { ok: true }>>> {
    const opened = await this.open(file, tags, file.path);
    if (!opened.ok) {
      await body?.cancel().catch(() => {});
      return opened;
    }
    const stream = opened.value;
    const answer = readAnswer(stream);
    const pumped = pumpInto(body && coalesced(body), stream, maxBytes);
    const first = await Promise.race([answer.then((a) => ({ answer: a })), pumped.then((p) => ({ pumped: p }))]);
    if ('pumped' in first) {
      const p = first.pumped;
      if (p.kind === 'too_large') {
        stream.reset('closed', 'the upload was larger than allowed');
        return fail('PAYLOAD_TOO_LARGE', `the upload is larger than ${maxBytes} bytes`);
      }
      if (p.kind === 'body_error') return fail('VALIDATION_FAILED', `the upload broke off: ${p.message}; nothing was changed`);
    } else if (!first.answer.ok || !first.answer.value.ok) {
      // Refused before the body was all sent: the rest need not travel.
      stream.reset('closed', 'the computer refused the upload');
      void pumped.catch(() => {});
    }
    const a = await answer;
    if (!a.ok) return a;
    const r = a.value;
    if (!r.ok) return pathFailure(PATH_CODES[r.code] ?? 'AGENT_ERROR', `the computer could not ${file.op} ${file.path}`, file.op, { path: file.path });
    return ok(r);
  }
}

/** The stream's answer line: {ok: true, …} or the computer's refusal; an API error when the stream broke. */
async function readAnswer(stream: RelayStream): Promise<Result<FileStreamResult>> {
  const reader = readableOf(stream).getReader();
  let text = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      if (text.length > MAX_ANSWER) return fail('AGENT_ERROR', 'the computer answered the upload with more than a line');
    }
  } catch {
    return fromApi(relayFailure(stream.failure ?? { code: 'error', message: 'the stream broke', remote: false }, 'the computer'));
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return fail('AGENT_ERROR', 'the computer did not say whether the upload was written');
  }
  const r = FileStreamResult.safeParse(parsed);
  return r.success ? ok(r.data) : fail('AGENT_ERROR', 'the computer answered the upload with something unexpected');
}

/** When an export link made now for `seconds` runs out, as the API shows it. */
export const expiryOf = (seconds: number) => isoNow(Date.now() + seconds * 1000);
