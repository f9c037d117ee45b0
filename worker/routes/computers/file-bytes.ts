/**
 * The files routes that move bytes (issue 11): download (Range welcome),
 * write (JSON, up to 10 MiB), upload (multipart with several files, archives
 * unpacked, or a raw body; up to MAX_UPLOAD_BYTES), and export links a
 * browser can fetch without a key. The bytes stream through the computer's
 * object over the relay (durable-objects/files/); no route holds a file.
 */
import { z } from 'zod';
import { ApiError, type ErrorCode } from '../../../schema/errors.ts';
import { ExportBody, MAX_WRITE_BODY_BYTES, WriteBody } from '../../../schema/api-files.ts';
import { FsPath, type FsStat } from '../../../schema/guest.ts';
import { json } from '../../http/responses.ts';
import { isoNow } from '../../http/ids.ts';
import { validate } from '../../http/body.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { callerOf, computerStub, requireComputerId } from '../../computers/access.ts';
import { credentialOf } from '../../computers/socket-auth.ts';
import { entryView, statView } from '../../files/views.ts';
import { mintExportToken, verifyExportToken } from '../../files/export-token.ts';
import { FILE_OP_HEADER, encodeFileOp, type FileOp } from '../../../durable-objects/files/file-requests.ts';
import { boundaryOf } from '../../../durable-objects/files/multipart.ts';
import type { Caller } from '../../../durable-objects/computer/record.ts';
import type { Env } from '../../env.ts';

const BASE = '/api/v1/computers/:id/files';
export const DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024;
export const maxUploadBytes = (env: Env) => Number(env.MAX_UPLOAD_BYTES ?? '') || DEFAULT_MAX_UPLOAD_BYTES;

/** Hands a file request to the computer's object, with `body` as its body. */
function toComputer(c: RouteContext, id: string, op: FileOp, body: BodyInit | null = null, extra: Record<string, string> = {}): Promise<Response> {
  const headers = new Headers({ 'x-request-id': c.requestId, [FILE_OP_HEADER]: encodeFileOp(op), ...extra });
  return computerStub(c.env, id).fetch(new Request(c.url.toString(), { method: body === null ? 'GET' : 'POST', headers, body }));
}

/** The object's JSON answer, or its error envelope passed on. */
async function answer<T>(res: Response): Promise<T> {
  const body = (await res.json()) as T & { error?: { code: ErrorCode; message: string } };
  if (!res.ok) throw new ApiError(body.error?.code ?? 'AGENT_ERROR', body.error?.message ?? 'the file request failed');
  return body;
}

const callerWith = (c: RouteContext): { caller: Caller; credential_id: string | null } => ({ caller: callerOf(c.principal), credential_id: credentialOf(c.principal) });

const UploadQuery = z.object({
  path: FsPath.optional(),
  extract: z.enum(['true', 'false', '1', '0']).optional(),
  format: z.enum(['auto', 'tar', 'tar.gz', 'zip']).optional(),
});

/** The archive format of a raw body, from ?format= or its Content-Type. */
function rawFormat(q: z.infer<typeof UploadQuery>, contentType: string | null): 'auto' | 'tar' | 'tar.gz' | 'zip' {
  if (q.format) return q.format;
  const t = (contentType ?? '').split(';')[0].trim().toLowerCase();
  return t === 'application/zip' ? 'zip' : 'auto';
}

export const FILE_BYTE_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: `${BASE}/download`,
    auth: 'tenant',
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const { path } = validate(z.object({ path: FsPath }), { path: c.query.get('path') ?? undefined }, 'query');
      const range = c.request.headers.get('range');
      return toComputer(c, id, { op: 'download', path, attachment: false, ...callerWith(c) }, null, range ? { range } : {});
    },
  }),
  route({
    method: 'POST',
    path: `${BASE}/write`,
    auth: 'tenant',
    body: WriteBody,
    bodyLimit: MAX_WRITE_BODY_BYTES,
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const b = c.body;
      const bytes = b.content !== undefined ? new TextEncoder().encode(b.content) : Uint8Array.from(atob(b.content_base64!), (ch) => ch.charCodeAt(0));
      const res = await toComputer(c, id, { op: 'write', path: b.path, max_bytes: bytes.byteLength, ...callerWith(c) }, bytes);
      const { written } = await answer<{ written: FsStat }>(res);
      const entry = entryView({ ...written, name: written.path.slice(written.path.lastIndexOf('/') + 1) });
      // The entry as clients read it, and under `data` too.
      return json({ ...entry, data: entry });
    },
  }),
  route({
    method: 'POST',
    path: `${BASE}/upload`,
    auth: 'tenant',
    rawBody: true,
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const max = maxUploadBytes(c.env);
      const declared = Number(c.request.headers.get('content-length') ?? '0');
      if (declared > max) {
        await c.request.body?.cancel().catch(() => {});
        throw new ApiError('PAYLOAD_TOO_LARGE', `the upload is larger than ${max} bytes`);
      }
      const q = validate(UploadQuery, Object.fromEntries(Object.keys(UploadQuery.shape).map((k) => [k, c.query.get(k) ?? undefined])), 'query');
      const extract = q.extract === 'true' || q.extract === '1';
      const who = callerWith(c);
      const contentType = c.request.headers.get('content-type');
      const boundary = boundaryOf(contentType);
      if (boundary) {
        const res = await toComputer(c, id, { op: 'upload', boundary, path: q.path, extract, max_bytes: max, ...who }, c.request.body);
        const r = await answer<{ files: FsStat[]; extracted: { path: string; entries: number }[] }>(res);
        const files = r.files.map((f) => entryView({ ...f, name: f.path.slice(f.path.lastIndexOf('/') + 1) }));
        return json({ data: { files, extracted: r.extracted }, files, success: true });
      }
      if (/^multipart\//i.test(contentType ?? '')) throw new ApiError('VALIDATION_FAILED', 'a multipart upload needs multipart/form-data with a boundary');
      if (!q.path) throw new ApiError('VALIDATION_FAILED', 'path is required for a raw upload (?path=); or send multipart/form-data');
      if (extract) {
        const res = await toComputer(c, id, { op: 'unpack', path: q.path, format: rawFormat(q, contentType), max_bytes: max, ...who }, c.request.body);
        const r = await answer<{ extracted: { path: string; entries: number }[] }>(res);
        return json({ data: { files: [], extracted: r.extracted }, success: true });
      }
      const res = await toComputer(c, id, { op: 'write', path: q.path, max_bytes: max, ...who }, c.request.body);
      const { written } = await answer<{ written: FsStat }>(res);
      const entry = entryView({ ...written, name: written.path.slice(written.path.lastIndexOf('/') + 1) });
      return json({ data: { files: [entry], extracted: [] }, files: [entry], success: true });
    },
  }),
  route({
    method: 'POST',
    path: `${BASE}/export`,
    auth: 'tenant',
    body: ExportBody,
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const st = await computerStub(c.env, id).fs(callerOf(c.principal), { op: 'stat', path: c.body.path, follow: true });
      if (!st.ok) throw new ApiError(st.code, st.message);
      const s = st.value as FsStat;
      const kind = s.is_dir ? 'dir' : 'file';
      const { token, expires_at } = await mintExportToken(c.env, { org_id: c.principal.org_id, computer_id: id, path: s.path, kind, credential_id: credentialOf(c.principal) }, c.body.expires_in);
      const url = `${c.url.origin}/api/v1/files/exports/${token}`;
      const body = { url, expires_at: isoNow(expires_at * 1000), path: s.path, kind, ...(kind === 'file' && { size: s.size }) };
      return json({ ...body, data: body, stat: statView(s) });
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/files/exports/:token',
    auth: 'public',
    handler: async (c) => {
      const claims = await verifyExportToken(c.env, c.params.token);
      if (claims === 'expired') throw new ApiError('UNAUTHORIZED', 'this export link has expired; ask for a new one with POST …/files/export');
      if (claims === 'revoked') throw new ApiError('UNAUTHORIZED', 'the API key that made this export link was revoked');
      if (!claims) throw new ApiError('UNAUTHORIZED', 'this is not a valid export link');
      const caller: Caller = { org_id: claims.org_id, workspace_ids: null, project_ids: null, credential_id: claims.credential_id };
      const op: FileOp =
        claims.kind === 'dir'
          ? { op: 'pack', caller, path: claims.path, credential_id: claims.credential_id }
          : { op: 'download', caller, path: claims.path, attachment: true, credential_id: claims.credential_id };
      const range = c.request.headers.get('range');
      return toComputer(c, claims.computer_id, op, null, range && claims.kind === 'file' ? { range } : {});
    },
  }),
];
