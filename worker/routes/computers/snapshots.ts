/**
 * Snapshots (issue 11): point-in-time copies of a computer's disk, kept on
 * its host. Take one of a running or stopped computer, list, read, change the
 * comment or `keep`, delete; restore into a new computer
 * (`POST /computers/{id}/restore/{sid}`) or in place on the stopped computer
 * (`POST …/snapshots/{sid}/restore`); follow progress as SSE
 * (`snapshot_progress`). The computer's object drives what touches the disk
 * (durable-objects/snapshots/); D1 holds the records.
 *
 * A kept snapshot outlives its computer: the routes under a deleted
 * computer's id still list, read, restore (into a new computer) and delete it.
 */
import { ApiError, unwrap } from '../../../schema/errors.ts';
import { CreateSnapshot, RestoreSnapshot, UpdateSnapshot } from '../../../schema/api-snapshots.ts';
import type { ComputerRow } from '../../../schema/db.ts';
import { json } from '../../http/responses.ts';
import { looksLikeId } from '../../http/ids.ts';
import { isoNow } from '../../http/ids.ts';
import { readPage, pageInfo } from '../../http/pagination.ts';
import { pagedQuery } from '../../http/paged-query.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { callerOf, computerStub, loadComputer, requireComputerId } from '../../computers/access.ts';
import { computerResource } from '../../computers/view.ts';
import { socketCaller } from '../../computers/socket-auth.ts';
import { openEventStream } from '../../events/open-stream.ts';
import { inScope, type Principal } from '../../middleware/principal.ts';
import { ownershipFilters } from '../../tenancy/ownership-filters.ts';
import { insertComputer } from '../computers.ts';
import { snapshotView } from '../../snapshots/views.ts';
import { getSnapshot, markSnapshotDeleted, parseSnapshot, type Snapshot } from '../../../durable-objects/snapshots/snapshot-rows.ts';
import { removeSnapshotsFromHost } from '../../../durable-objects/snapshots/computer-snapshots.ts';
import { DEFAULT_RESOLUTION } from '../../../schema/desktop.ts';

const BASE = '/api/v1/computers/:id/snapshots';
type Who = Pick<Principal, 'org_id' | 'workspace_ids' | 'project_ids'>;

/**
 * Whose snapshots these are: the computer when it exists (404/403 as for any computer route), or a
 * deleted computer that left kept snapshots in the caller's organization (row null).
 */
async function snapshotOwner(c: RouteContext, who: Who, rawId: string): Promise<{ id: string; row: ComputerRow | null }> {
  const id = requireComputerId(rawId);
  try {
    return { id, row: await loadComputer(c.env, who, id) };
  } catch (err) {
    if (!(err instanceof ApiError) || err.code !== 'NOT_FOUND') throw err;
  }
  const kept = await c.env.DB.prepare(`SELECT workspace_id, project_id FROM snapshots WHERE computer_id = ? AND org_id = ? AND status != 'deleted' LIMIT 1`)
    .bind(id, who.org_id)
    .first<{ workspace_id: string; project_id: string }>();
  if (!kept) throw new ApiError('NOT_FOUND', 'computer not found');
  if (!inScope(who, kept.workspace_id, kept.project_id)) throw new ApiError('FORBIDDEN', 'not a member of this computer');
  return { id, row: null };
}

/** The computer, which must still exist (taking or restoring in place needs it). */
const liveComputer = (owner: { row: ComputerRow | null }): ComputerRow => {
  if (!owner.row) throw new ApiError('NOT_FOUND', 'computer not found');
  return owner.row;
};

/** One snapshot of computer `computerId`: a malformed id is a 400, anything else not there a 404. */
async function loadSnapshot(c: RouteContext, who: Who, computerId: string, rawSid: string): Promise<Snapshot> {
  if (!looksLikeId(rawSid)) throw new ApiError('INVALID_ID', 'invalid snapshot id');
  const s = await getSnapshot(c.env.DB, who.org_id, rawSid.toLowerCase());
  if (!s || s.computer_id !== computerId) throw new ApiError('NOT_FOUND', 'snapshot not found');
  return s;
}

async function listSnapshots(c: RouteContext, where: string, args: unknown[]): Promise<Response> {
  const page = readPage(c.query);
  const { rows, total } = await pagedQuery<Parameters<typeof parseSnapshot>[0]>(
    c.env,
    { columns: '*', from: 'snapshots', where: `${where} AND status != 'deleted'`, args, orderBy: 'created_at DESC, rowid DESC' },
    page,
  );
  return json({ data: rows.map((r) => snapshotView(parseSnapshot(r))), page: pageInfo(page, total) });
}

export const SNAPSHOT_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: BASE,
    auth: 'tenant',
    body: CreateSnapshot,
    handler: async (c) => {
      const row = liveComputer(await snapshotOwner(c, c.principal, c.params.id));
      const s = unwrap(await computerStub(c.env, row.id).createSnapshot(callerOf(c.principal), { comment: c.body.comment ?? null, keep: c.body.keep ?? false }));
      return json({ data: snapshotView(s) }, 201);
    },
  }),
  route({
    method: 'GET',
    path: BASE,
    auth: 'tenant',
    handler: async (c) => {
      const { id } = await snapshotOwner(c, c.principal, c.params.id);
      return listSnapshots(c, 'computer_id = ? AND org_id = ?', [id, c.principal.org_id]);
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:sid`,
    auth: 'tenant',
    handler: async (c) => {
      const { id } = await snapshotOwner(c, c.principal, c.params.id);
      return json({ data: snapshotView(await loadSnapshot(c, c.principal, id, c.params.sid)) });
    },
  }),
  route({
    method: 'PATCH',
    path: `${BASE}/:sid`,
    auth: 'tenant',
    body: UpdateSnapshot,
    handler: async (c) => {
      const { id } = await snapshotOwner(c, c.principal, c.params.id);
      const s = await loadSnapshot(c, c.principal, id, c.params.sid);
      const comment = c.body.comment === undefined ? s.comment : c.body.comment;
      const keep = c.body.keep ?? s.keep;
      await c.env.DB.prepare(`UPDATE snapshots SET comment = ?, keep = ?, updated_at = ? WHERE id = ? AND status != 'deleted'`).bind(comment, keep ? 1 : 0, isoNow(), s.id).run();
      return json({ data: snapshotView(await loadSnapshot(c, c.principal, id, s.id)) });
    },
  }),
  route({
    method: 'DELETE',
    path: `${BASE}/:sid`,
    auth: 'tenant',
    handler: async (c) => {
      const owner = await snapshotOwner(c, c.principal, c.params.id);
      const s = await loadSnapshot(c, c.principal, owner.id, c.params.sid);
      if (owner.row) unwrap(await computerStub(c.env, owner.id).deleteSnapshot(callerOf(c.principal), s.id));
      else {
        // A kept snapshot of a deleted computer: nothing else can be using it.
        if (!(await markSnapshotDeleted(c.env.DB, s.id))) throw new ApiError('NOT_FOUND', 'snapshot not found');
        await removeSnapshotsFromHost(c.env, s.host_id, [s.id]);
      }
      const body = { id: s.id, deleted: true };
      return json({ ...body, data: body });
    },
  }),
  route({
    method: 'POST',
    path: `${BASE}/:sid/restore`,
    auth: 'tenant',
    handler: async (c) => {
      const row = liveComputer(await snapshotOwner(c, c.principal, c.params.id));
      const s = await loadSnapshot(c, c.principal, row.id, c.params.sid);
      const after = unwrap(await computerStub(c.env, row.id).restoreSnapshot(callerOf(c.principal), s.id));
      return json({ data: computerResource(await loadComputer(c.env, c.principal, row.id), c.env), snapshot: snapshotView(after) });
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/restore/:sid',
    auth: 'tenant',
    body: RestoreSnapshot,
    handler: async (c) => {
      const owner = await snapshotOwner(c, c.principal, c.params.id);
      const s = await loadSnapshot(c, c.principal, owner.id, c.params.sid);
      if (s.status !== 'ready' && s.status !== 'restoring') throw new ApiError('CONFLICT', `snapshot is ${s.status}; only a ready snapshot can be restored`);
      const host = await c.env.DB.prepare('SELECT id, region, status FROM hosts WHERE id = ?').bind(s.host_id).first<{ id: string; region: string; status: string }>();
      if (!host || host.status !== 'online') throw new ApiError('AGENT_UNAVAILABLE', 'the host that keeps this snapshot is not connected; try again when it is back');
      const src = owner.row;
      const source = s.source ?? (src && { name: src.name, template_type: src.template_type, size: src.size, selected_apps: src.selected_apps, disk_gb: src.disk_gb ?? undefined, resolution: src.resolution });
      if (!source) throw new ApiError('CONFLICT', 'this snapshot does not say what it was taken of; it cannot be restored into a new computer');
      // The new computer lives where the snapshot is: its disk is copied there.
      const created = await insertComputer(c.env, c.principal, {
        name: c.body.name ?? `${source.name.slice(0, 128 - '-restored'.length)}-restored`,
        template_type: source.template_type,
        size: source.size,
        selected_apps: source.selected_apps,
        resolution: source.resolution ?? src?.resolution ?? DEFAULT_RESOLUTION,
        workspace_id: s.workspace_id,
        project_id: s.project_id,
        placement: { host: { id: host.id, region: host.region } },
        min_disk_gb: source.disk_gb,
        // The snapshot is a copy made by its computer's driver: only that driver can restore it
        // (snapshots of older servers do not say: their computer's, or sandbox, the only one then).
        isolation: s.source?.isolation ?? src?.isolation ?? 'sandbox',
        auto_stop: src?.auto_stop ?? 0,
        external_workspace_id: src?.external_workspace_id ?? null,
        external_user_id: src?.external_user_id ?? null,
        external_project_id: src?.external_project_id ?? null,
        metadata: src?.metadata ?? {},
        visibility: src?.visibility ?? 'public',
        restore_snapshot: s.id,
      });
      return json({ data: computerResource(created, c.env), snapshot: snapshotView(s) }, 201);
    },
  }),
  route({
    method: 'GET',
    path: `${BASE}/:sid/events`,
    auth: 'self',
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const { caller } = await socketCaller(c, id);
      const owner = await snapshotOwner(c, caller, id);
      const s = await loadSnapshot(c, caller, owner.id, c.params.sid);
      // From the snapshot's first event unless Last-Event-ID says otherwise: a late client sees where it is.
      return openEventStream(
        c,
        c.env,
        s.org_id,
        { refs: { snapshot_id: s.id }, types: ['snapshot.progress'], flat: true, event: 'snapshot_progress', scope_workspace_ids: caller.workspace_ids, scope_project_ids: caller.project_ids },
        { replay: true, credential_id: caller.credential_id },
      );
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/snapshots',
    auth: 'tenant',
    handler: async (c) => {
      const f = ownershipFilters(c.env, c.principal, c.query, { external_workspace_id: null, external_user_id: null, external_project_id: null });
      const computer = c.query.get('computer_id');
      if (computer !== null && !looksLikeId(computer)) throw new ApiError('VALIDATION_FAILED', 'computer_id: must be a computer id');
      return computer === null ? listSnapshots(c, f.sql, f.args) : listSnapshots(c, `${f.sql} AND computer_id = ?`, [...f.args, computer.toLowerCase()]);
    },
  }),
];
