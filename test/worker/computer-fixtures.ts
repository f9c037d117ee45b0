/** Computers made through the public API, placed on a scripted host agent (agent-peer.ts). */
import { env } from 'cloudflare:test';
import { vi } from 'vitest';
import { createTenant, expectJson, tenantFetch, type FetchInit, type Tenant, type TenantOptions } from './helpers.ts';
import { connectHost, type ComputerPeer, type HostPeer, type HostSize } from './agent-peer.ts';

/** The computer object of the computers page (plus `region`). */
export interface ComputerView {
  id: string;
  tenant_id: string;
  owner_user_id: string | null;
  name: string;
  slug: string;
  template_type: string;
  size: 'small' | 'medium' | 'large';
  vcpus: number;
  memory_mb: number;
  isolation: 'sandbox' | 'vm';
  memory_kept: boolean;
  disk_gb: number;
  status: string;
  status_reason: string | null;
  vm_id: string | null;
  region: string;
  workspace_id: string;
  project_id: string;
  external_workspace_id: string | null;
  external_user_id: string | null;
  external_project_id: string | null;
  sandbox_url: string;
  desktop_url: string;
  selected_apps: string[];
  settings: Record<string, unknown>;
  ai_config: Record<string, unknown>;
  agent_session_id: string | null;
  agent_status: string | null;
  resolution: string;
  auto_stop: number;
  created_at: string;
  updated_at: string;
}

/** A tenant with a connected host of its own region. */
export interface World {
  tenant: Tenant;
  host: HostPeer;
  /** A tenant call, `path` relative to /api/v1/computers. */
  api(path: string, init?: FetchInit): Promise<Response>;
}

export async function world(opts: TenantOptions & { host?: HostSize } = {}): Promise<World> {
  const tenant = await createTenant(opts);
  const host = await connectHost(undefined, [], opts.host);
  return { tenant, host, api: (path, init) => tenantFetch(tenant.apiKey, `/api/v1/computers${path}`, init) };
}

/** POST /computers in the host's region; 201 expected. */
export async function createComputer(w: World, body: Record<string, unknown> = {}): Promise<ComputerView> {
  const res = await w.api('', { method: 'POST', body: { name: 'dev box', template_type: 'miosa-desktop', region: w.host.region, ...body } });
  return expectJson<ComputerView>(res, 201);
}

export async function getComputer(w: World, id: string): Promise<ComputerView> {
  return expectJson<ComputerView>(await w.api(`/${id}`), 200);
}

/** Waits until GET shows the status. */
export async function waitForStatus(w: World, id: string, status: string): Promise<ComputerView> {
  return vi.waitFor(
    async () => {
      const c = await getComputer(w, id);
      if (c.status !== status) throw new Error(`computer ${id} is ${c.status}, waiting for ${status}`);
      return c;
    },
    { timeout: 4000, interval: 20 },
  );
}

/** A computer the agent has provisioned and reports running. */
export async function runningComputer(w: World, body: Record<string, unknown> = {}): Promise<{ computer: ComputerView; peer: ComputerPeer }> {
  const created = await createComputer(w, body);
  const peer = await w.host.computer(created.id, { state: 'absent' });
  const computer = await waitForStatus(w, created.id, 'running');
  return { computer, peer };
}

/** A computer that was running and has been stopped through the API. */
export async function stoppedComputer(w: World, body: Record<string, unknown> = {}): Promise<{ computer: ComputerView; peer: ComputerPeer }> {
  const { computer, peer } = await runningComputer(w, body);
  const stopped = await expectJson<ComputerView>(await w.api(`/${computer.id}/stop`, { method: 'POST' }), 200);
  return { computer: stopped, peer };
}

/** The stub of a computer's Durable Object. */
export const computerStub = (id: string) => env.COMPUTER.get(env.COMPUTER.idFromName(id));
