/**
 * Credentials end with their source: revoking an API key ends the stream
 * tokens, tickets and terminal URLs minted from it and closes the sockets and
 * SSE viewers opened with them; other keys' are untouched. Deleting a
 * computer ends its own; deleting a workspace revokes the keys scoped to it.
 */
import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { BASE, createApiKey, createWorkspace, expectError, expectJson, operatorFetch, tenantFetch, uniqueSlug } from './helpers.ts';
import { SseReader } from '../e2e/sse.ts';
import { useAgentPeers } from './agent-peer.ts';
import { computerStub, runningComputer, world, type World } from './computer-fixtures.ts';
import { attach, createTerminal, pathOf } from './terminal-fixtures.ts';
import { connect, upgrade } from './ws-client.ts';
import { CLOSE_CREDENTIAL_REVOKED } from '../../durable-objects/credentials/held-credentials.ts';

useAgentPeers();

const revoke = async (w: World, keyId: string) =>
  expectJson(await operatorFetch(`/api/v1/admin/organizations/${w.tenant.orgId}/api-keys/${keyId}`, { method: 'DELETE' }), 200);

const execSocketPath = (id: string) => `/api/v1/computers/${id}/exec/stream?command=cat`;

async function ticketOf(key: string, computerId: string): Promise<{ stream_url: string }> {
  return expectJson(await tenantFetch(key, `/api/v1/computers/${computerId}/exec/stream`, { method: 'POST', body: { command: 'sleep 100' } }), 202);
}

describe('revoking an API key', () => {
  it('closes the terminal sockets, exec sockets and SSE viewers opened with it, and nothing of another key', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const other = await createApiKey(w.tenant.orgId, { name: 'other' });

    // Everything opened with the key about to be revoked…
    const { data: term } = await createTerminal(w, computer.id, peer);
    const terminal = await attach(term.ws_url);
    const exec = await connect(execSocketPath(computer.id), { authorization: `Bearer ${w.tenant.apiKey}` });
    const t = await ticketOf(w.tenant.apiKey, computer.id);
    const viewer = await SELF.fetch(`${BASE}${t.stream_url}`);
    expect(viewer.status).toBe(200);
    const events = new SseReader(viewer);
    // …and the same kinds with another key of the same organization.
    const otherTerm = await expectJson<{ data: { ws_url: string; session_id: string } }>(
      await tenantFetch(other.key, `/api/v1/computers/${computer.id}/terminal`, { method: 'POST', body: {} }),
      201,
    );
    const otherTerminal = await attach(otherTerm.data.ws_url);
    const otherExec = await connect(execSocketPath(computer.id), { authorization: `Bearer ${other.key}` });

    await revoke(w, w.tenant.keyId);

    // Closed by the time the revocation answered.
    expect(terminal.closedWith).toEqual({ code: CLOSE_CREDENTIAL_REVOKED, reason: 'credential revoked' });
    expect(exec.closedWith).toEqual({ code: CLOSE_CREDENTIAL_REVOKED, reason: 'credential revoked' });
    await expect(events.next()).rejects.toThrow();
    expect(otherTerminal.closedWith).toBeNull();
    expect(otherExec.closedWith).toBeNull();

    // What was minted from it is refused from now on: the terminal URL, the ticket, the key itself.
    await expectError(await upgrade(pathOf(term.ws_url)), 401, 'UNAUTHORIZED');
    await expectError(await SELF.fetch(`${BASE}${t.stream_url}`), 401, 'UNAUTHORIZED');
    await expectError(await tenantFetch(w.tenant.apiKey, `/api/v1/computers/${computer.id}`), 401, 'UNAUTHORIZED');
    // The other key's sessions still work.
    otherTerminal.send('x');
    await otherTerminal.until(() => peer.stdinOf(otherTerm.data.session_id).byteLength === 1);
  });

  it('ends stream tokens and JWT-opened sockets minted before the revocation', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const token = await expectJson<{ token: string }>(await w.api(`/${computer.id}/stream-token`, { method: 'POST' }), 200);
    const urls = await expectJson<{ terminal_url: string }>(await w.api(`/${computer.id}/urls`), 200);
    const jwt = await expectJson<{ data: { token: string } }>(
      await SELF.fetch(`${BASE}/api/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ api_key: w.tenant.apiKey }) }),
      200,
    );
    const viaJwt = await connect(execSocketPath(computer.id), { authorization: `Bearer ${jwt.data.token}` });

    await revoke(w, w.tenant.keyId);

    expect(viaJwt.closedWith?.code).toBe(CLOSE_CREDENTIAL_REVOKED);
    await expectError(await upgrade(`/api/v1/computers/${computer.id}/terminal/default/ws?auth=${encodeURIComponent(token.token)}`), 401, 'UNAUTHORIZED');
    await expectError(await upgrade(pathOf(urls.terminal_url)), 401, 'UNAUTHORIZED');
    await expectError(await upgrade(execSocketPath(computer.id), { authorization: `Bearer ${jwt.data.token}` }), 401, 'UNAUTHORIZED');
  });

  it("an object that was told refuses connections with the key's tokens even while routes still take them", async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const { data: term } = await createTerminal(w, computer.id, peer);
    // As if another isolate's key cache still said "live": D1 is untouched, only the object is told.
    expect(await computerStub(computer.id).endCredential(w.tenant.keyId)).toBe(0);
    await expectError(await upgrade(pathOf(term.ws_url)), 401, 'UNAUTHORIZED');
    await expectError(await upgrade(execSocketPath(computer.id), { authorization: `Bearer ${w.tenant.apiKey}` }), 401, 'UNAUTHORIZED');
    // The key itself still works where no object holds anything for it.
    await expectJson(await w.api(`/${computer.id}`), 200);
  });
});

describe('deleting what credentials are for', () => {
  it('deleting a computer ends its SSE viewers and closes its sockets', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const { data: term } = await createTerminal(w, computer.id, peer);
    const terminal = await attach(term.ws_url);
    const t = await ticketOf(w.tenant.apiKey, computer.id);
    const viewer = new SseReader(await SELF.fetch(`${BASE}${t.stream_url}`));
    await expectJson(await w.api(`/${computer.id}`, { method: 'DELETE' }), 200);
    // Its session ends with the computer (4001) or, had it outlived that, with the object (4004).
    expect([4001, 4004]).toContain((await terminal.waitClosed()).code);
    // The stream ends with an error event that says why, and its ticket no longer opens anything.
    const last = await viewer.next();
    expect(last).toMatchObject({ event: 'error' });
    expect(JSON.parse(last!.data).message).toMatch(/deleting|stopped/);
    expect(await viewer.next()).toBeNull();
    await expectError(await SELF.fetch(`${BASE}${t.stream_url}`), 401, 'UNAUTHORIZED');
  });

  it('deleting a workspace revokes keys scoped only to it, narrows keys scoped to it and others, and refuses while computers are in it', async () => {
    const w = await world();
    const ws = await createWorkspace(w.tenant.apiKey, uniqueSlug('gone'));
    const kept = await createWorkspace(w.tenant.apiKey, uniqueSlug('kept'));
    const only = await createApiKey(w.tenant.orgId, { workspaceIds: [ws] });
    const both = await createApiKey(w.tenant.orgId, { workspaceIds: [ws, kept] });

    // A scoped key may not delete workspaces; the default one cannot go; one with computers waits.
    await expectError(await tenantFetch(only.key, `/api/v1/workspaces/${ws}`, { method: 'DELETE' }), 403, 'FORBIDDEN');
    const def = await expectJson<{ data: { id: string; is_default: boolean }[] }>(await tenantFetch(w.tenant.apiKey, '/api/v1/workspaces?slug=default'), 200);
    await expectError(await tenantFetch(w.tenant.apiKey, `/api/v1/workspaces/${def.data[0].id}`, { method: 'DELETE' }), 409, 'CONFLICT');
    const { computer } = await runningComputer(w, { workspace_id: ws });
    await expectError(await tenantFetch(w.tenant.apiKey, `/api/v1/workspaces/${ws}`, { method: 'DELETE' }), 409, 'CONFLICT');
    await expectJson(await w.api(`/${computer.id}`, { method: 'DELETE' }), 200);

    expect(await expectJson(await tenantFetch(w.tenant.apiKey, `/api/v1/workspaces/${ws}`, { method: 'DELETE' }), 200)).toEqual({ id: ws, deleted: true });
    await expectError(await tenantFetch(w.tenant.apiKey, `/api/v1/workspaces/${ws}`), 404, 'NOT_FOUND');
    await expectError(await tenantFetch(only.key, '/api/v1/workspaces'), 401, 'UNAUTHORIZED');
    const listed = await expectJson<{ data: { id: string }[] }>(await tenantFetch(both.key, '/api/v1/workspaces'), 200);
    expect(listed.data.map((x) => x.id)).toEqual([kept]);
    const keyView = await expectJson<{ data: { workspace_ids: string[]; status: string } }>(
      await operatorFetch(`/api/v1/admin/organizations/${w.tenant.orgId}/api-keys/${both.id}`),
      200,
    );
    expect(keyView.data).toMatchObject({ workspace_ids: [kept], status: 'active' });
  });

  it("another tenant's workspace is a 404 to delete, and stays", async () => {
    const a = await world();
    const b = await world();
    const ws = await createWorkspace(a.tenant.apiKey, uniqueSlug('mine'));
    await expectError(await tenantFetch(b.tenant.apiKey, `/api/v1/workspaces/${ws}`, { method: 'DELETE' }), 404, 'NOT_FOUND');
    await expectJson(await tenantFetch(a.tenant.apiKey, `/api/v1/workspaces/${ws}`), 200);
  });
});
