import { describe, expect, it } from 'vitest';
import { createTenant, expectError, expectJson, tenantFetch, type FetchInit } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { getComputer, runningComputer, world } from './computer-fixtures.ts';
import { COMPUTER_ROUTE_SAMPLES } from '../computer-routes.ts';
import { ROUTES as ROUTE_TABLE } from '../../worker/routes/index.ts';

useAgentPeers();

const init = (method: string, body: unknown): FetchInit => (body === undefined ? { method } : { method, body });

describe('tenant isolation', () => {
  it('the walked list covers every tenant route of the table that takes a computer id', () => {
    const walked = new Set(COMPUTER_ROUTE_SAMPLES.map((r) => `${r.method} ${r.pattern}`));
    const table = ROUTE_TABLE.filter((d) => d.auth === 'tenant' && d.path.startsWith('/api/v1/computers/:id')).map((d) => `${d.method} ${d.path}`);
    expect(table.filter((t) => !walked.has(t))).toEqual([]);
  });

  it("another tenant's key gets 404 computer not found on every computer route, and nothing changes", async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await expectJson(await w.api(`/${computer.id}/env`, { method: 'POST', body: { name: 'SECRET', value: 'owner-only' } }), 201);
    await expectJson(await w.api(`/${computer.id}/ports`, { method: 'POST', body: { port: 3000, visibility: 'public' } }), 201);
    const seenByAgent = peer.requests.length;
    const intruder = await createTenant({ name: 'Intruder' });

    for (const { method, path, body } of COMPUTER_ROUTE_SAMPLES) {
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
      for (const { method, path, body } of COMPUTER_ROUTE_SAMPLES) {
        const err = await expectError(await w.api(`/${bad}${path}`, init(method, body)), 400, 'INVALID_ID');
        expect(err.error.message, `${method} /${bad}${path}`).toBe('invalid computer id');
      }
    }
    // Three ids on every computer route: well over a hundred requests on a machine shared with other work.
  }, 60_000);

  it('a well-formed id that does not exist is a 404 computer not found', async () => {
    const w = await world();
    const err = await expectError(await w.api(`/${crypto.randomUUID()}`), 404, 'NOT_FOUND');
    expect(err.error.message).toBe('computer not found');
    await expectError(await w.api(`/${crypto.randomUUID()}/exec`, { method: 'POST', body: { command: 'ls' } }), 404, 'NOT_FOUND');
  });
});
