import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson, tenantFetch, type FetchInit } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { getComputer, runningComputer, world } from './computer-fixtures.ts';

useAgentPeers();

/** Every route that takes a computer id, with a body that passes validation. */
const ROUTES: [string, string, unknown?][] = [
  ['GET', ''],
  ['PATCH', '', { agent_session_id: 'stolen' }],
  ['PUT', '', { agent_session_id: 'stolen' }],
  ['POST', '/start'],
  ['POST', '/stop'],
  ['POST', '/restart'],
  ['POST', '/clone', {}],
  ['POST', '/resize', { size: 'large' }],
  ['POST', '/move', { region: 'local' }],
  ['GET', '/auto-stop'],
  ['PATCH', '/auto-stop', { auto_stop_seconds: 60 }],
  ['GET', '/vnc-credentials'],
  ['POST', '/stream-token'],
  ['GET', '/urls'],
  ['GET', '/apps'],
  ['GET', '/metrics'],
  ['GET', '/env'],
  ['POST', '/env', { name: 'INJECTED', value: 'x' }],
  ['PATCH', '/env/SECRET', { value: 'overwritten' }],
  ['DELETE', '/env/SECRET'],
  ['GET', '/ports'],
  ['POST', '/ports', { port: 9999, visibility: 'public' }],
  ['PATCH', '/ports/3000', { visibility: 'private' }],
  ['DELETE', '/ports/3000'],
  ['POST', '/exec', { command: 'cat /etc/shadow' }],
  ['POST', '/exec/python', { code: 'print(1)' }],
  // Last: it would remove the computer.
  ['DELETE', ''],
];

const init = (method: string, body: unknown): FetchInit => (body === undefined ? { method } : { method, body });

describe('tenant isolation', () => {
  it("another tenant's key gets 404 computer not found on every computer route, and nothing changes", async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await expectJson(await w.api(`/${computer.id}/env`, { method: 'POST', body: { name: 'SECRET', value: 'owner-only' } }), 201);
    await expectJson(await w.api(`/${computer.id}/ports`, { method: 'POST', body: { port: 3000, visibility: 'public' } }), 201);
    const seenByAgent = peer.requests.length;
    const intruder = await createTenant({ name: 'Intruder' });

    for (const [method, path, body] of ROUTES) {
      const res = await tenantFetch(intruder.apiKey, `/api/v1/computers/${computer.id}${path}`, init(method, body));
      const text = await res.clone().text();
      const err = await expectError(res, 404, 'NOT_FOUND');
      expect(err.error.message, `${method} ${path}`).toBe('computer not found');
      expect(text, `${method} ${path}`).not.toContain(w.tenant.orgId);
    }

    const after = await getComputer(w, computer.id);
    expect(after).toMatchObject({ status: 'running', size: 'small', agent_session_id: null, auto_stop: 0 });
    const env = await expectJson<{ data: { name: string }[] }>(await w.api(`/${computer.id}/env`), 200);
    expect(env.data.map((v) => v.name)).toEqual(['SECRET']);
    const ports = await expectJson<{ data: { port: number; visibility: string }[] }>(await w.api(`/${computer.id}/ports`), 200);
    expect(ports.data.map((p) => [p.port, p.visibility])).toEqual([[3000, 'public']]);
    expect(peer.requests.slice(seenByAgent)).toEqual([]);
    // The intruder's list does not show it either.
    expect(await expectJson(await tenantFetch(intruder.apiKey, '/api/v1/computers'), 200)).toMatchObject({ computers: [], total: 0 });
  });
});

describe('computer ids', () => {
  it('a malformed id is a 400 "invalid computer id" on every computer route', async () => {
    const w = await world();
    for (const bad of ['not-a-uuid', '123', '550e8400-e29b-41d4-a716-44665544000Z']) {
      for (const [method, path, body] of ROUTES) {
        const err = await expectError(await w.api(`/${bad}${path}`, init(method, body)), 400, 'INVALID_ID');
        expect(err.error.message, `${method} /${bad}${path}`).toBe('invalid computer id');
      }
    }
  });

  it('a well-formed id that does not exist is a 404 computer not found', async () => {
    const w = await world();
    const err = await expectError(await w.api(`/${crypto.randomUUID()}`), 404, 'NOT_FOUND');
    expect(err.error.message).toBe('computer not found');
    await expectError(await w.api(`/${crypto.randomUUID()}/exec`, { method: 'POST', body: { command: 'ls' } }), 404, 'NOT_FOUND');
  });
});
