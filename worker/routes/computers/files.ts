/**
 * Files inside a computer (issue 11): list, readdir, stat, mkdir, rename,
 * copy, chmod, delete under /computers/{id}/files, with the bodies clients in
 * the wild send. The computer's guest does each as `user` (as root where
 * `user` is refused); a missing path is a 404, a refusal a 403, a directory
 * where a file is expected (or the reverse) a 409, a stopped computer a 409
 * COMPUTER_NOT_RUNNING. Like exec, no D1 read: the computer's object checks
 * the caller.
 */
import { z } from 'zod';
import { ApiError, unwrap } from '../../../schema/errors.ts';
import { FsPath, type FsRequest } from '../../../schema/guest.ts';
import { ChmodBody, CopyBody, DeleteBody, FilePathBody, MkdirBody, RenameBody } from '../../../schema/api-files.ts';
import { json } from '../../http/responses.ts';
import { validate } from '../../http/body.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { callerOf, computerStub, requireComputerId } from '../../computers/access.ts';
import { direntView, entryView, nextAfter, statView } from '../../files/views.ts';
import type { FsAnswerOf } from '../../../durable-objects/files/file-ops.ts';

const BASE = '/api/v1/computers/:id/files';

/** Runs one file operation in the caller's computer; failures become the envelope. */
async function fs<O extends FsRequest['op']>(c: RouteContext, request: Extract<FsRequest, { op: O }>): Promise<FsAnswerOf<O>> {
  const id = requireComputerId(c.params.id);
  return unwrap(await computerStub(c.env, id).fs(callerOf(c.principal), request)) as FsAnswerOf<O>;
}

const ListQuery = z.object({ path: FsPath.default('~'), after: z.string().min(1).max(4096).optional() });
const listQuery = (c: RouteContext) => validate(ListQuery, { path: c.query.get('path') ?? undefined, after: c.query.get('after') ?? undefined }, 'query');

export const FILE_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: BASE,
    auth: 'tenant',
    handler: async (c) => {
      const l = await fs(c, { op: 'list', ...listQuery(c) });
      const entries = l.entries.map(entryView);
      // {path, entries} as the files page has it; `data` is the same entries for clients that read a list there.
      return json({ path: l.path, entries, data: entries, truncated: l.truncated, next_after: nextAfter(l) });
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/readdir`,
    auth: 'tenant',
    handler: async (c) => {
      const l = await fs(c, { op: 'list', ...listQuery(c) });
      return json({ data: { path: l.path, entries: l.entries.map(direntView), truncated: l.truncated, next_after: nextAfter(l) } });
    },
  }),
  route({
    method: 'POST',
    path: `${BASE}/stat`,
    auth: 'tenant',
    body: FilePathBody,
    handler: async (c) => json({ data: statView(await fs(c, { op: 'stat', path: c.body.path })) }),
  }),
  route({
    method: 'POST',
    path: `${BASE}/mkdir`,
    auth: 'tenant',
    body: MkdirBody,
    handler: async (c) => json({ data: statView(await fs(c, { op: 'mkdir', ...c.body })) }),
  }),
  route({
    method: 'POST',
    path: `${BASE}/rename`,
    auth: 'tenant',
    body: RenameBody,
    handler: async (c) => json({ data: statView(await fs(c, { op: 'rename', ...c.body })) }),
  }),
  route({
    method: 'POST',
    path: `${BASE}/copy`,
    auth: 'tenant',
    body: CopyBody,
    handler: async (c) => json({ data: statView(await fs(c, { op: 'copy', ...c.body })) }),
  }),
  route({
    method: 'POST',
    path: `${BASE}/chmod`,
    auth: 'tenant',
    body: ChmodBody,
    handler: async (c) => json({ data: statView(await fs(c, { op: 'chmod', ...c.body })) }),
  }),
  route({
    method: 'DELETE',
    path: BASE,
    auth: 'tenant',
    body: DeleteBody,
    handler: async (c) => {
      const q = validate(
        z.object({ path: FsPath.optional(), recursive: z.enum(['true', 'false', '1', '0']).optional() }),
        { path: c.query.get('path') ?? undefined, recursive: c.query.get('recursive') ?? undefined },
        'query',
      );
      const path = c.body.path ?? q.path;
      if (path === undefined) throw new ApiError('VALIDATION_FAILED', 'path is required (in the JSON body or as ?path=)');
      const recursive = c.body.recursive ?? (q.recursive === undefined ? true : q.recursive === 'true' || q.recursive === '1');
      const r = await fs(c, { op: 'delete', path, recursive });
      return json({ data: r, success: true });
    },
  }),
];
