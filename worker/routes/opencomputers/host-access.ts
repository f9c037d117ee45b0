/**
 * Finding a tenant's host: a malformed id is a 400 "invalid host id", any
 * host that is not one of the caller's organization's tenant hosts (another
 * tenant's, a fleet host, none at all) a 404 "host not found" that says
 * nothing more. Hosts belong to the organization, not to a workspace: every
 * key of the organization reaches them (docs/opencomputers.md).
 */
import { ApiError } from '../../../schema/errors.ts';
import type { HostStatus } from '../../../schema/db.ts';
import type { Env } from '../../env.ts';
import { looksLikeId } from '../../http/ids.ts';
import type { Principal } from '../../middleware/principal.ts';
import type { HostRef } from '../../../durable-objects/host/tenant-host.ts';
import { CREDENTIAL_HEADER, HOST_OP_HEADER } from '../../../durable-objects/host/client-header.ts';

export const TENANT_HOST_COLUMNS =
  'id, org_id, name, region, labels, status, status_reason, key_prefix, agent_version, os, os_release, arch, hostname, cpus, memory_mb, agent_info, last_seen_at, revoked_at, created_at, updated_at';

export interface TenantHostRow {
  id: string;
  org_id: string;
  name: string;
  region: string;
  labels: string;
  status: HostStatus;
  status_reason: string | null;
  key_prefix: string;
  agent_version: string | null;
  os: string | null;
  os_release: string | null;
  arch: string | null;
  hostname: string | null;
  cpus: number | null;
  memory_mb: number | null;
  agent_info: string | null;
  last_seen_at: string | null;
  revoked_at: string | null;
  created_at: string;
  updated_at: string;
}

export const HOST_NOT_FOUND = 'host not found';

export function requireHostId(raw: string): string {
  if (!looksLikeId(raw)) throw new ApiError('INVALID_ID', 'invalid host id');
  return raw.toLowerCase();
}

export async function loadTenantHost(env: Env, p: Principal, rawId: string): Promise<TenantHostRow> {
  const id = requireHostId(rawId);
  const row = await env.DB.prepare(`SELECT ${TENANT_HOST_COLUMNS} FROM hosts WHERE id = ? AND org_id = ? AND kind = 'byo'`).bind(id, p.org_id).first<TenantHostRow>();
  if (!row) throw new ApiError('NOT_FOUND', HOST_NOT_FOUND);
  return row;
}

export const hostStub = (env: Env, id: string) => env.HOST.get(env.HOST.idFromName(id));

export const refOf = (row: TenantHostRow): HostRef => ({ id: row.id, org_id: row.org_id });

/**
 * A request for the host's object to serve a stream or a transfer (job
 * stream, events, file bytes): which host, whose, which key asked, and the
 * client's headers the object reads.
 */
export function hostOpRequest(
  c: { url: URL; request: Request; principal: Principal; requestId: string },
  host: HostRef,
  op: string,
  init: { headers?: Record<string, string>; pass?: string[]; method?: string; body?: ReadableStream | null; url?: string; signal?: AbortSignal } = {},
): Request {
  const headers = new Headers();
  for (const h of ['last-event-id', ...(init.pass ?? [])]) {
    const v = c.request.headers.get(h);
    if (v !== null) headers.set(h, v);
  }
  const own = { [HOST_OP_HEADER]: op, 'x-hangar-host-id': host.id, 'x-hangar-org-id': host.org_id, 'x-request-id': c.requestId, [CREDENTIAL_HEADER]: c.principal.credential_id ?? '', ...init.headers };
  for (const [k, v] of Object.entries(own)) headers.set(k, v);
  const body = init.body ?? null;
  return new Request(init.url ?? c.url.toString(), { method: init.method ?? 'GET', headers, body, signal: init.signal, ...(body ? { duplex: 'half' } : {}) } as RequestInit);
}

/** A host as the OpenComputers page shows it, with what its agent reported about the machine. */
export function hostView(h: TenantHostRow) {
  const info = h.agent_info ? (JSON.parse(h.agent_info) as Record<string, unknown>) : null;
  return {
    id: h.id,
    name: h.name,
    region: h.region,
    status: h.status,
    status_reason: h.status_reason,
    tenant_id: h.org_id,
    labels: JSON.parse(h.labels) as Record<string, string>,
    key_prefix: h.key_prefix,
    agent_version: h.agent_version,
    os: h.os,
    os_release: h.os_release,
    arch: h.arch,
    hostname: h.hostname,
    cpus: h.cpus,
    memory_mb: h.memory_mb,
    user: info?.user ?? null,
    node_version: info?.node_version ?? null,
    terminal: info?.terminal ?? null,
    fs_root: info?.fs_root ?? null,
    last_seen_at: h.last_seen_at,
    revoked_at: h.revoked_at,
    created_at: h.created_at,
    updated_at: h.updated_at,
  };
}

/** Single resources as compatibility.md says: the bare object and the same under `data`. */
export const single = <T extends object>(o: T) => ({ ...o, data: o });
