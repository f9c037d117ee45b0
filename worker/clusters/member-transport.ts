/**
 * How a cluster's members are reached and chosen, for the inference route
 * and for agent sessions whose model is a cluster: the cluster's object picks
 * a member and counts it busy; the member's host object relays the request
 * to the model server's loopback port.
 */
import type { Env } from '../env.ts';
import type { MemberPicker, MemberTransport } from '../../durable-objects/cluster/inference-proxy.ts';
import { MODEL_HTTP_OP, MODEL_PORT_HEADER, RELAY_FAILED_HEADER } from '../../durable-objects/cluster/member-relay.ts';
import { HOST_OP_HEADER } from '../../durable-objects/host/client-header.ts';
import { clusterStub } from './cluster-access.ts';

/** Members are reached through their host's object, which relays to the server's loopback port. */
export function memberTransport(env: Env, orgId: string): MemberTransport {
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

/** The cluster's object as the proxy's picker. */
export function clusterPicker(env: Env, clusterId: string): MemberPicker {
  const stub = clusterStub(env, clusterId);
  return { pick: (tried) => stub.pick(tried), done: (m, failed) => stub.done(m.lease, failed) };
}
