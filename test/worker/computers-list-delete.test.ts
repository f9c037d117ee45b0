import { SELF, env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { createComputer, runningComputer, world, type ComputerView } from './computer-fixtures.ts';

useAgentPeers();

interface ListBody {
  computers: ComputerView[];
  total: number;
  data: ComputerView[];
  page: { page: number; page_size: number; per_page: number; total: number };
}

describe('GET /computers', () => {
  it('answers {computers,total} and {data,page} side by side, newest first', async () => {
    const w = await world();
    const a = await createComputer(w, { name: 'a' });
    const b = await createComputer(w, { name: 'b' });
    const list = await expectJson<ListBody>(await w.api(''), 200);
    expect(list.total).toBe(2);
    expect(list.computers.map((c) => c.id).sort()).toEqual([a.id, b.id].sort());
    expect(list.data).toEqual(list.computers);
    expect(list.page).toEqual({ page: 1, page_size: 20, per_page: 20, total: 2 });
    expect(list.computers[0]).toMatchObject({ status: 'provisioning', size: 'small' });
  });

  it('pages with page and page_size, or per_page', async () => {
    const w = await world();
    for (const name of ['one', 'two', 'three']) await createComputer(w, { name });
    const first = await expectJson<ListBody>(await w.api('?page_size=2'), 200);
    expect(first.computers).toHaveLength(2);
    expect(first.total).toBe(3);
    expect(first.page).toEqual({ page: 1, page_size: 2, per_page: 2, total: 3 });
    const second = await expectJson<ListBody>(await w.api('?page=2&page_size=2'), 200);
    expect(second.computers).toHaveLength(1);
    expect(second.page).toMatchObject({ page: 2, page_size: 2 });
    const all = [...first.computers, ...second.computers].map((c) => c.id);
    expect(new Set(all).size).toBe(3);
    const perPage = await expectJson<ListBody>(await w.api('?per_page=1&page=3'), 200);
    expect(perPage.computers.map((c) => c.id)).toEqual([all[2]]);
    expect((await expectJson<ListBody>(await w.api('?page=9'), 200)).computers).toEqual([]);
  });

  it('is a 400 for page_size 101, page 0 or a non-number', async () => {
    const w = await world();
    for (const q of ['?page_size=101', '?per_page=101', '?page=0', '?page_size=abc']) {
      const err = await expectError(await w.api(q), 400, 'VALIDATION_FAILED');
      expect(err.error.message, q).toMatch(/^query: |page/);
    }
  });
});

describe('DELETE /computers/:id', () => {
  it('answers {id, deleted:true}; the agent got computer.destroy and GET is 404 after', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const res = await expectJson<Record<string, unknown>>(await w.api(`/${computer.id}`, { method: 'DELETE' }), 200);
    expect(res).toEqual({ id: computer.id, deleted: true });
    expect(await peer.take('computer.destroy')).toMatchObject({ type: 'computer.destroy' });
    const err = await expectError(await w.api(`/${computer.id}`), 404, 'NOT_FOUND');
    expect(err.error.message).toBe('computer not found');
    expect((await expectJson<ListBody>(await w.api(''), 200)).total).toBe(0);
    await expectError(await w.api(`/${computer.id}`, { method: 'DELETE' }), 404, 'NOT_FOUND');
  });

  it('deletes even when the agent is not connected, with its env vars and ports', async () => {
    const w = await world();
    const c = await createComputer(w);
    await expectJson(await w.api(`/${c.id}/env`, { method: 'POST', body: { name: 'A', value: '1' } }), 201);
    await expectJson(await w.api(`/${c.id}/ports`, { method: 'POST', body: { port: 8080, visibility: 'public' } }), 201);
    expect(await expectJson(await w.api(`/${c.id}`, { method: 'DELETE' }), 200)).toEqual({ id: c.id, deleted: true });
    await expectError(await w.api(`/${c.id}`), 404, 'NOT_FOUND');
    const left = await env.DB.batch([
      env.DB.prepare('SELECT COUNT(*) AS n FROM computers WHERE id = ?').bind(c.id),
      env.DB.prepare('SELECT COUNT(*) AS n FROM computer_env WHERE computer_id = ?').bind(c.id),
      env.DB.prepare('SELECT COUNT(*) AS n FROM computer_ports WHERE computer_id = ?').bind(c.id),
    ]);
    expect(left.map((r) => (r.results[0] as { n: number }).n)).toEqual([0, 0, 0]);
  });

  it('a computer deleted while its agent was away is not handed to the agent when it comes back', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await peer.drop();
    await expectJson(await w.api(`/${computer.id}`, { method: 'DELETE' }), 200);
    const res = await SELF.fetch(`https://agent.test/agent/v1/computers/${computer.id}/connect`, {
      headers: { Upgrade: 'websocket', Authorization: `Bearer ${w.host.key}` },
    });
    expect(res.status).toBe(404);
  });
});
