/**
 * Credentials end with their source on tenant hosts too: revoking an API key
 * closes the host terminals, job streams and host event streams opened with
 * it and refuses the terminal tickets minted with it; another key's stay.
 */
import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApiKey, createTenant, expectError, expectJson, operatorFetch, tenantFetch } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { HostModePeer, OC, registerTenantHost } from './host-mode-peer.ts';
import { connect, upgrade } from './ws-client.ts';
import { SseReader } from '../e2e/sse.ts';
import { CLOSE_CREDENTIAL_REVOKED } from '../../durable-objects/credentials/held-credentials.ts';

useAgentPeers();

const pathOf = (wsUrl: string) => {
  const u = new URL(wsUrl);
  return `${u.pathname}${u.search}`;
};

describe('revoking an API key on a tenant host', () => {
  it('closes its terminals, job streams and event streams, refuses its tickets, and leaves another key’s alone', async () => {
    const t = await createTenant();
    const other = await createApiKey(t.orgId, { name: 'other' });
    const h = await registerTenantHost(t.apiKey);
    const peer = await HostModePeer.online(h.key);
    const base = `${OC}/hosts/${h.id}`;
    const as = (key: string) => (path: string, init: Parameters<typeof tenantFetch>[2] = {}) => tenantFetch(key, `${base}${path}`, init);
    const mine = as(t.apiKey);
    const theirs = as(other.key);

    // A running job to watch.
    const job = await expectJson<{ id: string }>(await mine('/exec', { method: 'POST', body: { command: 'sleep 100', wait: false } }), 202);
    const jobProc = (await peer.take('proc.start')).params.proc_id;
    peer.output(jobProc, 'stdout', 'tick\n');

    // With the key about to be revoked: a terminal, a job stream, the host's events, and a ticket not used yet.
    const ticket = async (api: typeof mine) => expectJson<{ ws_url: string; session_id: string }>(await api('/terminal/ticket', { method: 'POST', body: {} }), 201);
    const term = await ticket(mine);
    await peer.take('proc.start');
    const terminal = await connect(pathOf(term.ws_url));
    const unused = await ticket(mine);
    await peer.take('proc.start');
    const jobStream = new SseReader(await mine(`/exec/${job.id}/stream`));
    expect((await jobStream.next())?.event).toBe('started');
    const events = new SseReader(await mine('/events'));
    expect((await events.next())?.event).toBeTruthy();
    // The same kinds with another key of the organization.
    const otherTerm = await ticket(theirs);
    const otherProc = (await peer.take('proc.start')).params.proc_id;
    const otherTerminal = await connect(pathOf(otherTerm.ws_url));
    const otherStream = new SseReader(await theirs(`/exec/${job.id}/stream`));
    expect((await otherStream.next())?.event).toBe('started');

    await expectJson(await operatorFetch(`/api/v1/admin/organizations/${t.orgId}/api-keys/${t.keyId}`, { method: 'DELETE' }), 200);

    // Ended by the time the revocation answered.
    expect(terminal.closedWith).toEqual({ code: CLOSE_CREDENTIAL_REVOKED, reason: 'credential revoked' });
    await expect(drain(jobStream)).rejects.toThrow();
    await expect(drain(events)).rejects.toThrow();
    // The ticket minted with it is refused, even unused.
    await expectError(await upgrade(pathOf(unused.ws_url)), 401, 'UNAUTHORIZED');
    // The other key's terminal and viewer are still there and still live.
    expect(otherTerminal.closedWith).toBeNull();
    otherTerminal.send('x');
    await otherTerminal.until(() => peer.stdinOf(otherProc) === 'x');
    peer.output(jobProc, 'stdout', 'tock\n');
    let seen = '';
    while (!seen.includes('tock')) seen += JSON.parse((await otherStream.next())!.data).data ?? '';
    // Revoking is not stopping: the job runs on.
    expect((await expectJson<{ status: string }>(await theirs(`/exec/${job.id}`), 200)).status).toBe('running');
  });

  it("a key revoked elsewhere is refused by a host's streams even before the host was told", async () => {
    const t = await createTenant();
    const h = await registerTenantHost(t.apiKey);
    await HostModePeer.online(h.key);
    // Routes may still take the key for a few seconds (their isolate's cache); the object asks D1 afresh.
    await env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').bind(new Date().toISOString(), t.keyId).run();
    const stub = env.HOST.get(env.HOST.idFromName(h.id));
    const res = await stub.fetch(
      new Request(`https://api.test${OC}/hosts/${h.id}/events`, {
        headers: { 'x-hangar-host-op': 'events', 'x-hangar-host-id': h.id, 'x-hangar-org-id': t.orgId, 'x-hangar-credential-id': t.keyId },
      }),
    );
    await expectError(res, 401, 'UNAUTHORIZED');
  });
});

/** Reads a stream to its end: resolves if the server closed it, rejects if it was cut. */
async function drain(r: SseReader): Promise<void> {
  while ((await r.next()) !== null);
}
