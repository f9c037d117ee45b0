/**
 * A cluster's OpenAI-compatible URL, `/inference/<slug>/v1/…`, with the
 * tenant's API key (docs/clusters.md): the request goes to a member's model
 * server through its host's relay (durable-objects/cluster/inference-proxy.ts
 * chooses, retries before the first byte, and passes the answer through
 * chunk by chunk). A slug that is not one of the caller's clusters is a 404.
 */
import { ApiError } from '../../schema/errors.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { CLUSTER_COLUMNS, CLUSTER_NOT_FOUND, type ClusterRow } from '../clusters/cluster-access.ts';
import { clusterPicker, memberTransport } from '../clusters/member-transport.ts';
import { proxyInference } from '../../durable-objects/cluster/inference-proxy.ts';

const PATH = '/inference/:slug/v1/*';

async function handle(c: RouteContext): Promise<Response> {
  const slug = c.params.slug;
  const row = await c.env.DB.prepare(`SELECT ${CLUSTER_COLUMNS} FROM clusters WHERE slug = ? AND org_id = ?`).bind(slug, c.principal.org_id).first<ClusterRow>();
  if (!row) throw new ApiError('NOT_FOUND', CLUSTER_NOT_FOUND);
  if (row.status === 'stopped') throw new ApiError('CLUSTER_STOPPED', `cluster "${row.slug}" is stopped; start it with POST /api/v1/opencomputers/clusters/${row.id}/start`);
  const prefix = `/inference/${encodeURIComponent(slug)}/v1`;
  const rest = c.url.pathname.startsWith(prefix) ? c.url.pathname.slice(prefix.length) : c.url.pathname.replace(/^\/inference\/[^/]+\/v1/, '');
  return proxyInference(c.request, rest + c.url.search, clusterPicker(c.env, row.id), memberTransport(c.env, row.org_id));
}


export const INFERENCE_ROUTES: RouteDef[] = [
  route({ method: 'GET', path: PATH, auth: 'tenant', handler: handle }),
  route({ method: 'POST', path: PATH, auth: 'tenant', rawBody: true, handler: handle }),
];
