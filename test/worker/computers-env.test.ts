import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { createComputer, runningComputer, stoppedComputer, world } from './computer-fixtures.ts';

useAgentPeers();

const SECRET = 'postgres://user:s3cret-pa55@db.internal/app';

interface EnvVar {
  name: string;
  created_at: string;
  updated_at: string;
}

describe('env vars', () => {
  it('POST stores only ciphertext in D1 and answers 201 without the value', async () => {
    const w = await world();
    const c = await createComputer(w);
    const res = await expectJson<{ data: EnvVar }>(await w.api(`/${c.id}/env`, { method: 'POST', body: { name: 'DATABASE_URL', value: SECRET } }), 201);
    expect(res.data).toEqual({ name: 'DATABASE_URL', created_at: expect.any(String), updated_at: expect.any(String) });
    const row = await env.DB.prepare('SELECT * FROM computer_env WHERE computer_id = ?').bind(c.id).first<Record<string, string>>();
    expect(row?.name).toBe('DATABASE_URL');
    expect(row?.ciphertext).toBeTruthy();
    const stored = JSON.stringify(row);
    expect(stored).not.toContain(SECRET);
    expect(stored).not.toContain('s3cret');
    expect(stored).not.toContain(btoa(SECRET).slice(0, 16));
  });

  it('GET lists names without values', async () => {
    const w = await world();
    const c = await createComputer(w);
    await expectJson(await w.api(`/${c.id}/env`, { method: 'POST', body: { name: 'B_VAR', value: 'bee' } }), 201);
    await expectJson(await w.api(`/${c.id}/env`, { method: 'POST', body: { name: 'A_VAR', value: SECRET } }), 201);
    const res = await w.api(`/${c.id}/env`);
    const text = await res.clone().text();
    const list = await expectJson<{ data: EnvVar[]; page: { total: number } }>(res, 200);
    expect(list.data.map((v) => v.name)).toEqual(['A_VAR', 'B_VAR']);
    expect(list.page.total).toBe(2);
    for (const v of list.data) expect(Object.keys(v).sort()).toEqual(['created_at', 'name', 'updated_at']);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('bee');
  });

  it('PATCH changes the value, DELETE removes the variable; unknown names are 404', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    await expectJson(await w.api(`/${computer.id}/env`, { method: 'POST', body: { name: 'TOKEN', value: 'old' } }), 201);
    const patched = await expectJson<{ data: EnvVar }>(await w.api(`/${computer.id}/env/TOKEN`, { method: 'PATCH', body: { value: 'new' } }), 200);
    expect(patched.data.name).toBe('TOKEN');
    // A stopped computer is not sent computer.env: the values wait for its next boot.
    expect(peer.requests.filter((r) => r.type === 'computer.env')).toEqual([]);
    await expectJson(await w.api(`/${computer.id}/start`, { method: 'POST' }), 200);
    expect((await peer.take('computer.start')).spec.env).toEqual({ TOKEN: 'new' });

    expect(await expectJson(await w.api(`/${computer.id}/env/TOKEN`, { method: 'DELETE' }), 200)).toEqual({ name: 'TOKEN', deleted: true });
    expect((await expectJson<{ data: EnvVar[] }>(await w.api(`/${computer.id}/env`), 200)).data).toEqual([]);
    await expectError(await w.api(`/${computer.id}/env/TOKEN`, { method: 'DELETE' }), 404, 'NOT_FOUND');
    await expectError(await w.api(`/${computer.id}/env/NOPE`, { method: 'PATCH', body: { value: 'x' } }), 404, 'NOT_FOUND');
  });

  it('a bad name is a 400 naming the field; a duplicate is a 409', async () => {
    const w = await world();
    const c = await createComputer(w);
    for (const name of ['1ABC', 'HAS-DASH', 'has space', '']) {
      const err = await expectError(await w.api(`/${c.id}/env`, { method: 'POST', body: { name, value: 'v' } }), 400, 'VALIDATION_FAILED');
      expect(err.error.message, JSON.stringify(name)).toMatch(/^name/);
    }
    const missing = await expectError(await w.api(`/${c.id}/env`, { method: 'POST', body: { name: 'OK' } }), 400, 'VALIDATION_FAILED');
    expect(missing.error.message).toBe('value is required');
    await expectJson(await w.api(`/${c.id}/env`, { method: 'POST', body: { name: 'DUP', value: 'one' } }), 201);
    await expectError(await w.api(`/${c.id}/env`, { method: 'POST', body: { name: 'DUP', value: 'two' } }), 409, 'CONFLICT');
    await expectError(await w.api(`/${c.id}/env/1BAD`, { method: 'PATCH', body: { value: 'x' } }), 400, 'VALIDATION_FAILED');
  });

  it('the running computer gets computer.env with the decrypted values on every change', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    await expectJson(await w.api(`/${computer.id}/env`, { method: 'POST', body: { name: 'DATABASE_URL', value: SECRET } }), 201);
    expect((await peer.take('computer.env')).env).toEqual({ DATABASE_URL: SECRET });
    await expectJson(await w.api(`/${computer.id}/env/DATABASE_URL`, { method: 'PATCH', body: { value: 'changed' } }), 200);
    expect((await peer.take('computer.env')).env).toEqual({ DATABASE_URL: 'changed' });
    await expectJson(await w.api(`/${computer.id}/env/DATABASE_URL`, { method: 'DELETE' }), 200);
    expect((await peer.take('computer.env')).env).toEqual({});
  });

  it('the provision spec carries the env decrypted', async () => {
    const w = await world();
    const c = await createComputer(w);
    await expectJson(await w.api(`/${c.id}/env`, { method: 'POST', body: { name: 'API_KEY', value: 'k-123' } }), 201);
    await expectJson(await w.api(`/${c.id}/env`, { method: 'POST', body: { name: 'EMPTY', value: '' } }), 201);
    const peer = await w.host.computer(c.id, { state: 'absent' });
    expect((await peer.take('computer.provision')).spec.env).toEqual({ API_KEY: 'k-123', EMPTY: '' });
  });
});
