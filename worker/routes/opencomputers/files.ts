/**
 * Files on a tenant host (spec/05, File System): list, stat, download,
 * upload, delete, mkdir, with `?path=` absolute or relative to the agent
 * user's home. The machine's own permissions apply (403 when the user may
 * not, 404 when nothing is there), and an agent started with --fs-root
 * refuses paths outside its tree (403). Downloads and uploads stream through
 * the HostObject over the relay (durable-objects/host/host-files.ts).
 */
import { HostPath, MkdirBody } from '../../../schema/api-opencomputers.ts';
import { ApiError, unwrap } from '../../../schema/errors.ts';
import { declaredTooLarge, uploadLimit } from '../../../durable-objects/host/host-files.ts';
import { validate } from '../../http/body.ts';
import { json } from '../../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { hostOpRequest, hostStub, loadTenantHost, refOf, single } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

const FS = `${OC_BASE}/hosts/:id/fs`;

/** `?path=`, required unless `fallback` is given. */
function pathParam(c: RouteContext, fallback?: string): string {
  const raw = c.query.get('path') ?? fallback;
  if (raw === undefined) throw new ApiError('VALIDATION_FAILED', 'path is required');
  return validate(HostPath, raw, 'path');
}

function recursiveParam(c: RouteContext): boolean {
  const r = c.query.get('recursive');
  if (r === null || r === 'false' || r === '0') return false;
  if (r === 'true' || r === '1') return true;
  throw new ApiError('VALIDATION_FAILED', 'recursive: must be true or false');
}

async function hostOf(c: RouteContext) {
  const host = await loadTenantHost(c.env, c.principal, c.params.id);
  return { host, stub: hostStub(c.env, host.id), ref: refOf(host) };
}

/** Hands a download or an upload to the host's object, its body (if any) streaming through. */
async function transfer(c: RouteContext, op: 'fs-download' | 'fs-upload'): Promise<Response> {
  const { host, stub } = await hostOf(c);
  pathParam(c);
  const max = uploadLimit(c.env);
  if (op === 'fs-upload' && declaredTooLarge(c.request, max)) throw new ApiError('PAYLOAD_TOO_LARGE', `an upload is at most ${max} bytes`);
  const upload = op === 'fs-upload';
  return stub.fetch(hostOpRequest(c, refOf(host), op, { pass: ['range', 'content-type', 'content-length'], method: upload ? 'POST' : 'GET', body: upload ? c.request.body : null }));
}

const listing = (path: (c: RouteContext) => string) => async (c: RouteContext) => {
  const { stub, ref } = await hostOf(c);
  return json(unwrap(await stub.fsList(ref, path(c))));
};

const remove = async (c: RouteContext) => {
  const { stub, ref } = await hostOf(c);
  unwrap(await stub.fsDelete(ref, pathParam(c), recursiveParam(c)));
  return new Response(null, { status: 204 });
};

export const FILE_ROUTES: RouteDef[] = [
  route({ method: 'GET', path: `${FS}/list`, auth: 'tenant', handler: listing((c) => pathParam(c, '.')) }),
  route({ method: 'GET', path: FS, auth: 'tenant', handler: listing((c) => pathParam(c, '.')) }),
  route({
    method: 'GET',
    path: `${FS}/stat`,
    auth: 'tenant',
    handler: async (c) => {
      const { stub, ref } = await hostOf(c);
      return json(single(unwrap(await stub.fsStat(ref, pathParam(c)))));
    },
  }),
  route({ method: 'GET', path: `${FS}/download`, auth: 'tenant', handler: (c) => transfer(c, 'fs-download') }),
  route({ method: 'POST', path: `${FS}/upload`, auth: 'tenant', rawBody: true, handler: (c) => transfer(c, 'fs-upload') }),
  route({ method: 'DELETE', path: `${FS}/delete`, auth: 'tenant', handler: remove }),
  route({ method: 'DELETE', path: FS, auth: 'tenant', handler: remove }),
  route({
    method: 'POST',
    path: `${FS}/mkdir`,
    auth: 'tenant',
    body: MkdirBody,
    handler: async (c) => {
      const { stub, ref } = await hostOf(c);
      const made = unwrap(await stub.fsMkdir(ref, c.body.path));
      return json(single(unwrap(await stub.fsStat(ref, made.path))), 201);
    },
  }),
];
