/**
 * Which model a session talks to, decided at dispatch:
 *  1. `model_id` (or `model`) naming one of the tenant's inference clusters
 *     (its id or slug): the cluster's model, reached through the cluster;
 *  2. the tenant's own OpenAI-compatible provider, from secrets —
 *     OPENAI_API_KEY (required), OPENAI_BASE_URL (default
 *     https://api.openai.com/v1), OPENAI_MODEL (the default model) — a
 *     host secret of the session's host winning over a tenant secret;
 *  3. the operator's default provider: Worker secrets AGENT_MODEL_BASE_URL
 *     and AGENT_MODEL_API_KEY, and AGENT_MODEL (the default model).
 * A `model_id` that names no cluster is a model name for the provider.
 * Keys are never stored with the session: it keeps where the key comes from
 * and reads it again for each call.
 */
export const TENANT_SECRET_NAMES = { apiKey: 'OPENAI_API_KEY', baseUrl: 'OPENAI_BASE_URL', model: 'OPENAI_MODEL' } as const;
export const DEFAULT_OPENAI_BASE_URL = 'https://api.openai.com/v1';

export interface ClusterRef {
  id: string;
  slug: string;
  model: string;
}

export interface OperatorModelEnv {
  AGENT_MODEL_BASE_URL?: string;
  AGENT_MODEL_API_KEY?: string;
  AGENT_MODEL?: string;
}

/** Where a session's model calls go (no key in it: see `providerKey`). */
export type ModelChoice =
  | { kind: 'cluster'; cluster_id: string; model: string }
  | { kind: 'provider'; source: 'tenant' | 'operator'; base_url: string; model: string };

export type ChoiceResult = { ok: true; choice: ModelChoice } | { ok: false; message: string };

function validUrl(u: string): boolean {
  try {
    const url = new URL(u);
    return url.protocol === 'https:' || url.protocol === 'http:';
  } catch {
    return false;
  }
}

/** Decides the model of a new session. `secrets` are the host's and tenant's secrets merged (host wins). */
export function chooseModel(requested: string | undefined, cluster: ClusterRef | null, secrets: Record<string, string>, env: OperatorModelEnv): ChoiceResult {
  if (cluster) return { ok: true, choice: { kind: 'cluster', cluster_id: cluster.id, model: cluster.model } };
  if (secrets[TENANT_SECRET_NAMES.apiKey]) {
    const base = secrets[TENANT_SECRET_NAMES.baseUrl] || DEFAULT_OPENAI_BASE_URL;
    if (!validUrl(base)) return { ok: false, message: `the secret ${TENANT_SECRET_NAMES.baseUrl} is not an http(s) URL` };
    const model = requested ?? secrets[TENANT_SECRET_NAMES.model];
    if (!model) return { ok: false, message: `name a model: send model_id, or set the secret ${TENANT_SECRET_NAMES.model}` };
    return { ok: true, choice: { kind: 'provider', source: 'tenant', base_url: base, model } };
  }
  if (env.AGENT_MODEL_BASE_URL && validUrl(env.AGENT_MODEL_BASE_URL)) {
    const model = requested ?? env.AGENT_MODEL;
    if (!model) return { ok: false, message: 'name a model: send model_id (this deployment has no default model)' };
    return { ok: true, choice: { kind: 'provider', source: 'operator', base_url: env.AGENT_MODEL_BASE_URL, model } };
  }
  return {
    ok: false,
    message: `no model to run the agent: name one of your inference clusters in model_id, or set the secrets ${TENANT_SECRET_NAMES.apiKey} (and ${TENANT_SECRET_NAMES.baseUrl}, ${TENANT_SECRET_NAMES.model}) for your own OpenAI-compatible provider`,
  };
}

/** The key for a provider choice, read again at each call (null: the provider takes none). */
export function providerKey(choice: ModelChoice, secrets: Record<string, string>, env: OperatorModelEnv): string | null {
  if (choice.kind !== 'provider') return null;
  return (choice.source === 'tenant' ? secrets[TENANT_SECRET_NAMES.apiKey] : env.AGENT_MODEL_API_KEY) || null;
}
