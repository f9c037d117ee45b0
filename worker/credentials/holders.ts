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

export const CREDENTIAL_HOLDERS: HolderSource[] = [computersOf];
