import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { createComputer, world } from './computer-fixtures.ts';

useAgentPeers();

interface Port {
  port: number;
  visibility: string;
  url: string;
  created_at: string;
  updated_at: string;
}

describe('ports', () => {
  it('exposes a port (201), lists it, changes its visibility and removes it', async () => {
    const w = await world();
    const c = await createComputer(w);
    const created = await expectJson<{ data: Port }>(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port: 3000, visibility: 'public' } }), 201);
    expect(created.data).toMatchObject({ port: 3000, visibility: 'public' });
    expect(created.data.url).toMatch(/^https:\/\/3000-/);
    await expectJson(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port: 22, visibility: 'private' } }), 201);

    const list = await expectJson<{ data: Port[]; page: { total: number } }>(await w.api(`/${c.id}/ports`), 200);
    expect(list.data.map((p) => [p.port, p.visibility])).toEqual([[22, 'private'], [3000, 'public']]);
    expect(list.page.total).toBe(2);

    const patched = await expectJson<{ data: Port }>(await w.api(`/${c.id}/ports/3000`, { method: 'PATCH', body: { visibility: 'protected' } }), 200);
    expect(patched.data).toMatchObject({ port: 3000, visibility: 'protected' });
    expect((await expectJson<{ data: Port[] }>(await w.api(`/${c.id}/ports`), 200)).data[1].visibility).toBe('protected');

    expect(await expectJson(await w.api(`/${c.id}/ports/3000`, { method: 'DELETE' }), 200)).toEqual({ port: 3000, deleted: true });
    expect((await expectJson<{ data: Port[] }>(await w.api(`/${c.id}/ports`), 200)).data.map((p) => p.port)).toEqual([22]);
  });

  it('the port must be an integer 1-65535: 0, 65536, 3.5 and "80" are 400s naming port', async () => {
    const w = await world();
    const c = await createComputer(w);
    for (const port of [0, 65536, 3.5, '80', -1, null]) {
      const err = await expectError(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port, visibility: 'public' } }), 400, 'VALIDATION_FAILED');
      expect(err.error.message, JSON.stringify(port)).toMatch(/^port/);
    }
    for (const port of [1, 65535]) await expectJson(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port, visibility: 'public' } }), 201);
  });

  it('visibility is one of public, private, protected (tenant and key are their other names); without one, the computer\'s', async () => {
    const w = await world();
    const c = await createComputer(w, { visibility: 'key' });
    for (const visibility of ['open', 'PUBLIC', null]) {
      const err = await expectError(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port: 8080, visibility } }), 400, 'VALIDATION_FAILED');
      expect(err.error.message).toMatch(/^visibility/);
    }
    await expectJson(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port: 8080, visibility: 'private' } }), 201);
    await expectError(await w.api(`/${c.id}/ports/8080`, { method: 'PATCH', body: { visibility: 'everyone' } }), 400, 'VALIDATION_FAILED');
    await expectError(await w.api(`/${c.id}/ports/8080`, { method: 'PATCH', body: {} }), 400, 'VALIDATION_FAILED');
    const named = async (port: number, visibility?: string) =>
      (await expectJson<{ data: { visibility: string } }>(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port, visibility } }), 201)).data.visibility;
    expect(await named(8081, 'tenant')).toBe('private');
    expect(await named(8082, 'key')).toBe('protected');
    expect(await named(8083)).toBe('protected');
  });

  it('exposing the same port twice is a 409', async () => {
    const w = await world();
    const c = await createComputer(w);
    await expectJson(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port: 5432, visibility: 'private' } }), 201);
    await expectError(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port: 5432, visibility: 'public' } }), 409, 'CONFLICT');
  });

  it('PATCH and DELETE of a port that is not exposed are 404; a bad port in the path is 400', async () => {
    const w = await world();
    const c = await createComputer(w);
    await expectError(await w.api(`/${c.id}/ports/4000`, { method: 'PATCH', body: { visibility: 'public' } }), 404, 'NOT_FOUND');
    await expectError(await w.api(`/${c.id}/ports/4000`, { method: 'DELETE' }), 404, 'NOT_FOUND');
    await expectError(await w.api(`/${c.id}/ports/70000`, { method: 'DELETE' }), 400, 'VALIDATION_FAILED');
    await expectError(await w.api(`/${c.id}/ports/http`, { method: 'DELETE' }), 400, 'VALIDATION_FAILED');
  });
});
