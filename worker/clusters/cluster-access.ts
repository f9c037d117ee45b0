/**
 * Inference clusters in D1 and their objects: finding a tenant's cluster (a
 * malformed id is a 400, any cluster not of the caller's organization a 404),
 * the cluster as the API shows it (its status from its members, live), and
 * telling member hosts to serve or let go of its model.
 */
import { ApiError } from '../../schema/errors.ts';
import type { ClusterStatus, ClusterView } from '../../schema/api-clusters.ts';
import type { Env } from '../env.ts';
import { looksLikeId } from '../http/ids.ts';
import type { Principal } from '../middleware/principal.ts';

export const CLUSTER_COLUMNS = 'id, org_id, name, slug, model, status, host_ids, created_at, updated_at';
export const CLUSTER_NOT_FOUND = 'cluster not found';

export interface ClusterRow {
  id: string;
  org_id: string;
  name: string;
  slug: string;
  model: string;
  /** `stopped` is the tenant's; otherwise the members say (ClusterObject.state). */
  status: ClusterStatus;
  host_ids: string;
  created_at: string;
  updated_at: string;
}

export const clusterStub = (env: Env, id: string) => env.CLUSTER.get(env.CLUSTER.idFromName(id));
const hostStub = (env: Env, id: string) => env.HOST.get(env.HOST.idFromName(id));

export function requireClusterId(raw: string): string {
  if (!looksLikeId(raw)) throw new ApiError('INVALID_ID', 'invalid cluster id');
  return raw.toLowerCase();
}

export async function loadCluster(env: Env, p: Principal, rawId: string): Promise<ClusterRow> {
  const id = requireClusterId(rawId);
  const row = await env.DB.prepare(`SELECT ${CLUSTER_COLUMNS} FROM clusters WHERE id = ? AND org_id = ?`).bind(id, p.org_id).first<ClusterRow>();
  if (!row) throw new ApiError('NOT_FOUND', CLUSTER_NOT_FOUND);
  return row;
}

export const hostIdsOf = (row: ClusterRow): string[] => JSON.parse(row.host_ids) as string[];

export function inferenceUrl(origin: string, slug: string): string {
  return `${origin}/inference/${slug}/v1`;
}

/** The cluster as the API shows it; a running cluster's status and members come from its object. */
export async function clusterView(env: Env, row: ClusterRow, origin: string): Promise<ClusterView> {
  const hostIds = hostIdsOf(row);
  let status: ClusterStatus = row.status;
  let members: ClusterView['members'] = hostIds.map((host_id) => ({ host_id, state: 'stopped', error: null }));
  if (row.status !== 'stopped') {
    const s = await clusterStub(env, row.id).state();
    status = s.status;
    members = s.members.map((m) => ({ host_id: m.host_id, state: m.in_rotation ? 'ready' : m.state === 'ready' ? 'unhealthy' : m.state, error: m.error }));
  }
  return {
    id: row.id,
    name: row.name,
    model: row.model,
    slug: row.slug,
    status,
    host_ids: hostIds,
    inference_url: inferenceUrl(origin, row.slug),
    created_at: row.created_at,
    updated_at: row.updated_at,
    members,
  };
}

/** Starts the cluster: its object learns its members, and each member host is asked to serve the model. */
export async function startMembers(env: Env, row: ClusterRow): Promise<void> {
  const hostIds = hostIdsOf(row);
  await clusterStub(env, row.id).configure({ id: row.id, model: row.model, host_ids: hostIds });
  await Promise.all(hostIds.map((h) => hostStub(env, h).serveModel({ id: h, org_id: row.org_id }, row.id, row.model)));
}

/** Stops the cluster: each member host lets go of the model, and the object forgets its members. */
export async function stopMembers(env: Env, row: ClusterRow): Promise<void> {
  const hostIds = hostIdsOf(row);
  await Promise.all(hostIds.map((h) => hostStub(env, h).unserveModel({ id: h, org_id: row.org_id }, row.id)));
  await clusterStub(env, row.id).configure({ id: row.id, model: row.model, host_ids: [] });
}
