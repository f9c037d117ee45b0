/**
 * An inference request carried to a member's model server: the Worker hands
 * it to the member host's object (header `x-hangar-host-op: model-http`, the
 * server's loopback port in MODEL_PORT_HEADER), which relays it as one HTTP
 * exchange over the host agent's link to that port (relay's `host_tcp`).
 * When no answer can be had — the agent is away, nothing listens on the port,
 * the connection broke before the response head — the object says so in
 * RELAY_FAILED_HEADER rather than as an answer of the server, so the cluster
 * route tries another member.
 */
import { ApiError } from '../../schema/errors.ts';
import type { RelayMux } from '../relay/relay-mux.ts';
import { relayHttp } from '../relay/http.ts';
import { MAX_INFERENCE_BODY } from './inference-proxy.ts';

export const MODEL_HTTP_OP = 'model-http';
export const MODEL_PORT_HEADER = 'x-hangar-model-port';
export const RELAY_FAILED_HEADER = 'x-hangar-relay-failed';

/** In the host's object: relays the request to the model server's port; a failure before any answer is a 502 marked as the relay's. */
export async function relayToModelServer(mux: RelayMux, request: Request): Promise<Response> {
  const port = Number(request.headers.get(MODEL_PORT_HEADER));
  const url = new URL(request.url);
  const failed = (code: string, message: string) => new Response(message, { status: 502, headers: { [RELAY_FAILED_HEADER]: code } });
  if (!Number.isInteger(port) || port < 1 || port > 65535) return failed('BAD_REQUEST', 'no model server port');
  // The agent sends the headers it is given and no Host of its own; HTTP/1.1 servers refuse a request without one.
  const headers = new Headers(request.headers);
  headers.set('host', `127.0.0.1:${port}`);
  try {
    return await relayHttp(mux, new Request(request, { headers }), {
      target: { kind: 'host_tcp', port },
      path: url.pathname + url.search,
      websocket: false,
      tags: {},
      maxBody: MAX_INFERENCE_BODY,
      where: `the model server on port ${port}`,
    });
  } catch (e) {
    return e instanceof ApiError ? failed(e.code, e.message) : failed('UPSTREAM_ERROR', (e as Error).message);
  }
}
