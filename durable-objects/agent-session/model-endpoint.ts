/**
 * A session's model, reached for one call: the choice made at dispatch
 * (model-choice.ts) with what it needs read again now — the provider's key
 * from the tenant's secrets or the operator's, or the cluster's members
 * through the same proxy as its inference URL (a stopped or deleted cluster
 * is an error the session ends with). The secret values read here are also
 * what the session masks in its events.
 */
import type { Env } from '../../worker/env.ts';
import { loadHostSecrets } from '../../worker/crypto/host-secrets.ts';
import { clusterPicker, memberTransport } from '../../worker/clusters/member-transport.ts';
import { proxyInference } from '../cluster/inference-proxy.ts';
import type { HostRef } from '../host/tenant-host.ts';
import { providerKey, type ModelChoice } from './model-choice.ts';
import type { ModelEndpoint } from './openai-client.ts';

export type EndpointResult = { ok: true; endpoint: ModelEndpoint; secrets: string[] } | { ok: false; error: string; secrets: string[] };

/** Base URL of a cluster endpoint: the proxy is called directly, so only the path after it counts. */
const CLUSTER_BASE = 'http://cluster.internal/v1';

export async function modelEndpoint(env: Env, host: HostRef, choice: ModelChoice): Promise<EndpointResult> {
  const secrets = await loadHostSecrets(env.DB, env.ENV_ENCRYPTION_KEY, host.org_id, host.id);
  const values = [...Object.values(secrets), ...(env.AGENT_MODEL_API_KEY ? [env.AGENT_MODEL_API_KEY] : [])];
  if (choice.kind === 'provider') {
    return { ok: true, endpoint: { baseUrl: choice.base_url, apiKey: providerKey(choice, secrets, env), model: choice.model }, secrets: values };
  }
  const row = await env.DB.prepare('SELECT status FROM clusters WHERE id = ? AND org_id = ?').bind(choice.cluster_id, host.org_id).first<{ status: string }>();
  if (!row) return { ok: false, error: 'the inference cluster this session uses was deleted', secrets: values };
  if (row.status === 'stopped') return { ok: false, error: 'the inference cluster this session uses is stopped', secrets: values };
  const picker = clusterPicker(env, choice.cluster_id);
  const transport = memberTransport(env, host.org_id);
  const fetchVia = (req: Request) => proxyInference(req, new URL(req.url).pathname.slice('/v1'.length), picker, transport);
  return { ok: true, endpoint: { baseUrl: CLUSTER_BASE, apiKey: null, model: choice.model, fetch: fetchVia }, secrets: values };
}
