/**
 * Helpers for tests that drive the Worker over HTTP (SELF.fetch): operator
 * calls, tenants made through the admin API, and unique client addresses so
 * per-address rate limits never leak from one test into another.
 */
import { SELF } from 'cloudflare:test';

export const BASE = 'https://api.test';
export const OPERATOR_TOKEN = 'op_test_token';

/** A client address (CF-Connecting-IP) no other test uses. */
export function uniqueIp(): string {
  const b = crypto.getRandomValues(new Uint8Array(3));
  return `10.${b[0]}.${b[1]}.${b[2]}`;
}

/** RequestInit whose body may be any JSON value (sent as JSON) as well as a string. */
export type FetchInit = Omit<RequestInit, 'body'> & { body?: unknown };

/** Fetches through the Worker; a non-string body is sent as JSON. Each call gets its own client address unless one is given. */
export function apiFetch(path: string, init: FetchInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has('cf-connecting-ip')) headers.set('cf-connecting-ip', uniqueIp());
  let body: BodyInit | undefined;
  if (init.body !== undefined) {
    body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
    if (!headers.has('content-type')) headers.set('content-type', 'application/json');
  }
  return SELF.fetch(`${BASE}${path}`, { ...init, headers, body });
}

/** Adds a header unless the caller set it already. */
function withDefault(init: FetchInit, name: string, value: string): FetchInit {
  const headers = new Headers(init.headers);
  if (!headers.has(name)) headers.set(name, value);
  return { ...init, headers };
}

/** A call to the operator (admin) API with the test OPERATOR_TOKEN. */
export const operatorFetch = (path: string, init: FetchInit = {}): Promise<Response> => apiFetch(path, withDefault(init, 'authorization', `Bearer ${OPERATOR_TOKEN}`));

/** A call with a tenant credential (API key or JWT). */
export const tenantFetch = (credential: string, path: string, init: FetchInit = {}): Promise<Response> =>
  apiFetch(path, withDefault(init, 'authorization', `Bearer ${credential}`));

/** Reads a JSON body, failing the test with the body text when the status is not the expected one. */
export async function expectJson<T = Record<string, unknown>>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  if (res.status !== status) throw new Error(`expected HTTP ${status}, got ${res.status}: ${text}`);
  return JSON.parse(text) as T;
}

export interface ErrorBody {
  error: { code: string; message: string; request_id: string };
}

/** Asserts an error envelope with this status and code; returns it. */
export async function expectError(res: Response, status: number, code: string): Promise<ErrorBody> {
  const body = await expectJson<ErrorBody>(res, status);
  if (body.error?.code !== code) throw new Error(`expected error ${code}, got ${JSON.stringify(body)}`);
  return body;
}

export interface TenantOptions {
  name?: string;
  slug?: string;
  credits?: number;
  rateLimitPerMinute?: number;
  mode?: 'live' | 'test';
  workspaceIds?: string[];
  projectIds?: string[];
}

export interface Tenant {
  orgId: string;
  apiKey: string;
  keyId: string;
  /** The organization's default workspace and its default project. */
  workspaceId: string;
  projectId: string;
}

/** Creates an organization (with its default workspace and project) and an API key through the admin API. */
export async function createTenant(opts: TenantOptions = {}): Promise<Tenant> {
  const org = await expectJson<{ data: { id: string; default_workspace_id: string; default_project_id: string } }>(
    await operatorFetch('/api/v1/admin/organizations', {
      method: 'POST',
      body: {
        name: opts.name ?? 'Test Org',
        ...(opts.slug && { slug: opts.slug }),
        credits: opts.credits ?? 100,
        ...(opts.rateLimitPerMinute !== undefined && { rate_limit_per_minute: opts.rateLimitPerMinute }),
      },
    }),
    201,
  );
  const key = await createApiKey(org.data.id, opts);
  return { orgId: org.data.id, apiKey: key.key, keyId: key.id, workspaceId: org.data.default_workspace_id, projectId: org.data.default_project_id };
}

/** Adds an API key to an organization; returns its id and the plaintext key. */
export async function createApiKey(orgId: string, opts: Pick<TenantOptions, 'mode' | 'workspaceIds' | 'projectIds'> & { name?: string } = {}) {
  const res = await operatorFetch(`/api/v1/admin/organizations/${orgId}/api-keys`, {
    method: 'POST',
    body: { name: opts.name ?? 'test key', mode: opts.mode ?? 'live', workspace_ids: opts.workspaceIds, project_ids: opts.projectIds },
  });
  const body = await expectJson<{ data: { id: string; key: string } }>(res, 201);
  return body.data;
}

/** Creates a workspace through the tenant API and returns its id. */
export async function createWorkspace(apiKey: string, slug: string, name = slug): Promise<string> {
  const body = await expectJson<{ data: { id: string } }>(await tenantFetch(apiKey, '/api/v1/workspaces', { method: 'POST', body: { slug, name } }), 201);
  return body.data.id;
}

/** A slug no other test uses. */
export const uniqueSlug = (prefix = 't'): string => `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
