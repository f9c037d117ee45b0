/**
 * A cluster's OpenAI-compatible URL, `/inference/<slug>/v1/…`, with the
 * tenant's API key (docs/clusters.md): the request goes to a member's model
 * server through its host's relay (durable-objects/cluster/inference-proxy.ts
 * chooses, retries before the first byte, and passes the answer through
 * chunk by chunk). A slug that is not one of the caller's clusters is a 404.
 */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { CLUSTER_COLUMNS, CLUSTER_NOT_FOUND, clusterStub, type ClusterRow } from '../clusters/cluster-access.ts';
import { proxyInference, type MemberPicker, type MemberTransport } from '../../durable-objects/cluster/inference-proxy.ts';
import { MODEL_HTTP_OP, MODEL_PORT_HEADER, RELAY_FAILED_HEADER } from '../../durable-objects/cluster/member-relay.ts';
import { HOST_OP_HEADER } from '../../durable-objects/host/client-header.ts';

const PATH = '/inference/:slug/v1/*';

/** Members are reached through their host's object, which relays to the server's loopback port. */
function transport(env: Env, orgId: string): MemberTransport {
  return {
    async send(pick, request) {
      const headers = new Headers(request.headers);
      headers.set(HOST_OP_HEADER, MODEL_HTTP_OP);
      headers.set(MODEL_PORT_HEADER, String(pick.port));
      headers.set('x-hangar-host-id', pick.host_id);
      headers.set('x-hangar-org-id', orgId);
      const res = await env.HOST.get(env.HOST.idFromName(pick.host_id)).fetch(new Request(request.url, { method: request.method, headers, body: request.body }));
      const failed = res.headers.get(RELAY_FAILED_HEADER);
      if (failed) return { ok: false, error: `${failed}: ${(await res.text()).slice(0, 300)}` };
      return { ok: true, response: res };
    },
  };
}

async function handle(c: RouteContext): Promise<Response> {
  const slug = c.params.slug;
  const row = await c.env.DB.prepare(`SELECT ${CLUSTER_COLUMNS} FROM clusters WHERE slug = ? AND org_id = ?`).bind(slug, c.principal.org_id).first<ClusterRow>();
  if (!row) throw new ApiError('NOT_FOUND', CLUSTER_NOT_FOUND);
  if (row.status === 'stopped') throw new ApiError('CLUSTER_STOPPED', `cluster "${row.slug}" is stopped; start it with POST /api/v1/opencomputers/clusters/${row.id}/start`);
  const stub = clusterStub(c.env, row.id);
  const picker: MemberPicker = { pick: (tried) => stub.pick(tried), done: (m, failed) => stub.done(m.lease, failed) };
  const prefix = `/inference/${encodeURIComponent(slug)}/v1`;
  const rest = c.url.pathname.startsWith(prefix) ? c.url.pathname.slice(prefix.length) : c.url.pathname.replace(/^\/inference\/[^/]+\/v1/, '');
  return proxyInference(c.request, rest + c.url.search, picker, transport(c.env, row.org_id));
}


export const INFERENCE_ROUTES: RouteDef[] = [
  route({ method: 'GET', path: PATH, auth: 'tenant', handler: handle }),
  route({ method: 'POST', path: PATH, auth: 'tenant', rawBody: true, handler: handle }),
];
