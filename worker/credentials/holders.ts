/**
 * Durable Objects that may hold connections opened with an organization's
 * credentials: whoever accepts a client connection (a WebSocket, an SSE
 * viewer, a relayed stream) adds its objects here, and those objects answer
 * `endCredential` (durable-objects/credentials/held-credentials.ts).
 */
import type { Env } from '../env.ts';

/** What revocation calls on each holder. */
export interface CredentialHolder {
  endCredential(credentialId: string): Promise<unknown>;
}

export type HolderSource = (env: Env, orgId: string) => Promise<CredentialHolder[]>;

/** Every computer of the organization: terminals, exec sockets, streamed commands' viewers and tickets. */
const computersOf: HolderSource = async (env, orgId) => {
  const { results } = await env.DB.prepare('SELECT id FROM computers WHERE org_id = ?').bind(orgId).all<{ id: string }>();
  return results.map((r) => env.COMPUTER.get(env.COMPUTER.idFromName(r.id)));
};

/** Every tenant host of the organization (OpenComputers): terminals, job and event viewers, file transfers, terminal tickets. */
const tenantHostsOf: HolderSource = async (env, orgId) => {
  const { results } = await env.DB.prepare("SELECT id FROM hosts WHERE org_id = ? AND kind = 'byo' AND status != 'revoked'").bind(orgId).all<{ id: string }>();
  return results.map((r) => env.HOST.get(env.HOST.idFromName(r.id)));
};

/** The organization's event log: its SSE streams (GET /events, …/computers/{id}/events, snapshot progress). */
const orgEventsOf: HolderSource = async (env, orgId) => [env.ORG_EVENTS.get(env.ORG_EVENTS.idFromName(orgId))];

export const CREDENTIAL_HOLDERS: HolderSource[] = [computersOf, tenantHostsOf, orgEventsOf];
