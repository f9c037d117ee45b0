/**
 * Real host-mode agents for end-to-end tests: a tenant host registered
 * through the API, the agent fetched from the API the way a customer gets it
 * (install.sh, one-file agent.mjs) and run by Node ≥ 20 as an unprivileged
 * user of this machine (scripts/host-mode-agent.ts), so the tests show whose
 * permissions apply.
 */
import { rmSync } from 'node:fs';
import { freshHome, installAgent, runHostModeAgent, type HostModeAgent } from '../../scripts/host-mode-agent.ts';
import { hangar, type Client } from './client.ts';

export interface HostAgent extends HostModeAgent {
  hostId: string;
  hostKey: string;
}

/** Registers a tenant host through the API; its key is shown only here. */
export async function registerTenantHost(client: Client, name = 'e2e-box'): Promise<{ id: string; host_key: string }> {
  const r = await client.post<{ id: string; host_key: string }>('/opencomputers/hosts', { name });
  if (r.status !== 201) throw new Error(`register failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Starts an agent as the test user for a host (registered now unless given); resolves once it said `ready`. */
export async function startHostAgent(client: Client, opts: { name?: string; args?: string[]; host?: { id: string; host_key: string } } = {}): Promise<HostAgent> {
  const r = { body: opts.host ?? (await registerTenantHost(client, opts.name)) };
  const home = freshHome();
  try {
    const agentFile = installAgent(hangar().origin, home, r.body.host_key);
    const agent = await runHostModeAgent({ origin: hangar().origin, hostKey: r.body.host_key, agentFile, home, args: opts.args, removeHome: true });
    return { ...agent, hostId: r.body.id, hostKey: r.body.host_key };
  } catch (err) {
    rmSync(home, { recursive: true, force: true });
    throw Object.assign(err as Error, { hostId: r.body.id });
  }
}
