/**
 * The files routes that move bytes hand their request to the computer's
 * object (a body or a response must stream through it to the relay): the
 * route says what to do in FILE_OP_HEADER, having checked the query; the
 * object checks the caller and that the computer runs, then streams.
 */
import { z } from 'zod';
import { ApiError, type Result } from '../../schema/errors.ts';
import { FsPath } from '../../schema/guest.ts';
import { errorResponse, json } from '../../worker/http/responses.ts';
import { CallerSchema } from '../exec/client-sockets.ts';
import type { Caller } from '../computer/record.ts';
import type { AgentLink } from '../agent-link.ts';
import type { FileTransfers } from './file-transfers.ts';
import { upload } from './upload.ts';

/** Header carrying a FileOp from a route to the ComputerObject (routes build the request afresh: a client cannot set it). */
export const FILE_OP_HEADER = 'x-hangar-file-op';

const Format = z.enum(['auto', 'tar', 'tar.gz', 'zip']);
const MaxBytes = z.number().int().nonnegative();

export const FileOp = z.discriminatedUnion('op', [
  /** GET …/files/download, and an export link of a file (`attachment`). */
  z.object({ op: z.literal('download'), caller: CallerSchema, path: FsPath, attachment: z.boolean(), credential_id: z.string().nullable() }),
  /** An export link of a directory: a tar.gz. */
  z.object({ op: z.literal('pack'), caller: CallerSchema, path: FsPath, credential_id: z.string().nullable() }),
  /** The request's body is the whole file (POST …/files/write, a raw upload). */
  z.object({ op: z.literal('write'), caller: CallerSchema, path: FsPath, max_bytes: MaxBytes, credential_id: z.string().nullable() }),
  /** The request's body is an archive to unpack into `path`. */
  z.object({ op: z.literal('unpack'), caller: CallerSchema, path: FsPath, format: Format, max_bytes: MaxBytes, credential_id: z.string().nullable() }),
  /** The request's body is multipart/form-data. */
  z.object({ op: z.literal('upload'), caller: CallerSchema, boundary: z.string().min(1).max(70), path: FsPath.optional(), extract: z.boolean(), max_bytes: MaxBytes, credential_id: z.string().nullable() }),
]);
export type FileOp = z.infer<typeof FileOp>;

export const encodeFileOp = (op: FileOp): string => encodeURIComponent(JSON.stringify(op));

function parseFileOp(header: string | null): FileOp | null {
  try {
    const r = FileOp.safeParse(JSON.parse(decodeURIComponent(header ?? '')));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export interface FileRequestHost {
  link: AgentLink;
  transfers: FileTransfers;
  /** The caller may use the computer and it runs. */
  requireRunning(caller: Caller): Promise<Result<unknown>>;
}

/** Serves a files route's request inside the object. */
export async function serveFileRequest(host: FileRequestHost, request: Request): Promise<Response> {
  const requestId = request.headers.get('x-request-id') ?? '';
  const op = parseFileOp(request.headers.get(FILE_OP_HEADER));
  const refuse = (code: ApiError['code'], message: string) => errorResponse(new ApiError(code, message), requestId);
  if (!op) return refuse('BAD_REQUEST', 'malformed file request');
  const allowed = await host.requireRunning(op.caller);
  if (!allowed.ok) {
    await request.body?.cancel().catch(() => {});
    return refuse(allowed.code, allowed.message);
  }
  const tags = { credential_id: op.credential_id };
  const t = host.transfers;
  let r: Result<Response>;
  switch (op.op) {
    case 'download':
      r = await t.download(op.path, { attachment: op.attachment, range: request.headers.get('range'), tags, requestId });
      break;
    case 'pack':
      r = await t.pack(op.path, { tags });
      break;
    case 'write': {
      const w = await t.write(op.path, request.body, op.max_bytes, tags);
      r = w.ok ? { ok: true, value: json({ written: w.value }) } : w;
      break;
    }
    case 'unpack': {
      const u = await t.unpack(op.path, request.body, op.format, op.max_bytes, tags);
      r = u.ok ? { ok: true, value: json({ extracted: [u.value] }) } : u;
      break;
    }
    case 'upload': {
      if (!request.body) return refuse('VALIDATION_FAILED', 'the upload has no body');
      const u = await upload(host.link, t, request.body, { boundary: op.boundary, path: op.path, extract: op.extract, maxBytes: op.max_bytes, tags });
      r = u.ok ? { ok: true, value: json(u.value) } : u;
      break;
    }
  }
  if (r.ok) return r.value;
  await request.body?.cancel().catch(() => {});
  return refuse(r.code, r.message);
}
