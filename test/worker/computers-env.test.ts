import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { createComputer, getComputer, runningComputer, stoppedComputer, world } from './computer-fixtures.ts';
import { ENV_LIMITS } from '../../schema/api.ts';
import { encryptValue, envAad } from '../../worker/crypto/env-cipher.ts';

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

describe('env var limits', () => {
  const post = (w: Awaited<ReturnType<typeof world>>, id: string, name: string, value: string) => w.api(`/${id}/env`, { method: 'POST', body: { name, value } });
  const names = async (w: Awaited<ReturnType<typeof world>>, id: string) =>
    (await expectJson<{ data: EnvVar[] }>(await w.api(`/${id}/env?page_size=100&page=1`), 200)).data.map((v) => v.name);

  it(`a value is at most ${ENV_LIMITS.value_bytes} bytes of UTF-8, whatever its length in characters`, async () => {
    const w = await world();
    const c = await createComputer(w);
    await expectJson(await post(w, c.id, 'FITS', 'x'.repeat(ENV_LIMITS.value_bytes)), 201);
    // 'é' is two bytes: half as many characters already pass the limit.
    const err = await expectError(await post(w, c.id, 'WIDE', 'é'.repeat(ENV_LIMITS.value_bytes / 2 + 1)), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toBe(`value: must be at most ${ENV_LIMITS.value_bytes} bytes`);
    expect(await names(w, c.id)).toEqual(['FITS']);
  });

  it(`a computer's variables take at most ${ENV_LIMITS.total_bytes} bytes together: the one past it is a 400 and nothing is stored`, async () => {
    const w = await world();
    const c = await createComputer(w);
    const full = 'v'.repeat(ENV_LIMITS.value_bytes);
    for (const name of ['BIG_A', 'BIG_B', 'BIG_C']) await expectJson(await post(w, c.id, name, full), 201);
    // 3 x (5 + 32768) bytes are stored; D takes almost all of what is left.
    const room = ENV_LIMITS.total_bytes - 3 * (5 + ENV_LIMITS.value_bytes) - 1;
    await expectJson(await post(w, c.id, 'D', 'd'.repeat(room - 50)), 201);
    const err = await expectError(await post(w, c.id, 'ONE_MORE', 'x'.repeat(100)), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toBe(
      `env: this computer's variables would take ${ENV_LIMITS.total_bytes - 50 + 8 + 100} bytes (names and values); at most ${ENV_LIMITS.total_bytes} are allowed per computer`,
    );
    expect(await names(w, c.id)).toEqual(['BIG_A', 'BIG_B', 'BIG_C', 'D']);
    // Growing one that is there past the total is refused the same way, and it keeps its value.
    await expectError(await w.api(`/${c.id}/env/D`, { method: 'PATCH', body: { value: 'd'.repeat(room + 1) } }), 400, 'VALIDATION_FAILED');
    await expectJson(await w.api(`/${c.id}/env/D`, { method: 'PATCH', body: { value: 'd'.repeat(room) } }), 200);
    // Shrinking always fits, and makes room.
    await expectJson(await w.api(`/${c.id}/env/BIG_A`, { method: 'PATCH', body: { value: 'small' } }), 200);
    await expectJson(await post(w, c.id, 'NOW_FITS', 'x'.repeat(1000)), 201);
  });

  it(`at most ${ENV_LIMITS.count} variables per computer`, async () => {
    const w = await world();
    const c = await createComputer(w);
    // All but one stored directly (as that many POSTs would have), then the last that fits and the one past it.
    await env.DB.batch(
      Array.from({ length: ENV_LIMITS.count - 1 }, (_, i) =>
        env.DB.prepare("INSERT INTO computer_env (computer_id, name, ciphertext, iv, value_bytes, created_at, updated_at) VALUES (?, ?, 'x', 'x', 1, 'x', 'x')").bind(c.id, `V${i}`),
      ),
    );
    await expectJson(await post(w, c.id, 'V_FITS', '1'), 201);
    const err = await expectError(await post(w, c.id, 'V_LAST', '1'), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toBe(`env: a computer has at most ${ENV_LIMITS.count} variables; delete one first`);
  });

  it('two requests racing for the last room: one is stored, the other is a 400', async () => {
    const w = await world();
    const c = await createComputer(w);
    const big = 'v'.repeat(ENV_LIMITS.value_bytes - 16);
    const fit = Math.floor(ENV_LIMITS.total_bytes / ENV_LIMITS.value_bytes) - 1;
    for (let i = 0; i < fit; i++) await expectJson(await post(w, c.id, `F${i}`, big), 201);
    const statuses = (await Promise.all([post(w, c.id, 'RACE_A', big), post(w, c.id, 'RACE_B', big)])).map((r) => r.status).sort();
    expect(statuses).toEqual([201, 400]);
  });

  it('the crashing input of the issue: 45 variables of 32 KiB are refused past the limit, and the computer keeps booting', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const value = 'x'.repeat(32 * 1024);
    const answers: number[] = [];
    for (let i = 0; i < 4; i++) answers.push((await post(w, computer.id, `K${i}`, value)).status);
    expect(answers).toEqual([201, 201, 201, 400]);
    const rest = await Promise.all(Array.from({ length: 41 }, (_, i) => post(w, computer.id, `K${i + 4}`, value)));
    expect(rest.every((r) => r.status === 400)).toBe(true);
    await expectJson(await w.api(`/${computer.id}/restart`, { method: 'POST' }), 200);
    const start = peer.requests.filter((r) => r.type === 'computer.start').at(-1) as { spec: { env: Record<string, string> } };
    expect(Object.keys(start.spec.env)).toEqual(['K0', 'K1', 'K2']);
  });

  it('variables stored over the limits before there were any: the boot is refused with a 400 that says what to do, and nothing reaches the host', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    const value = 'x'.repeat(32 * 1024);
    for (let i = 0; i < 5; i++) {
      const { ciphertext, iv } = await encryptValue(env.ENV_ENCRYPTION_KEY, envAad(computer.id, `OLD_${i}`), value);
      await env.DB.prepare('INSERT INTO computer_env (computer_id, name, ciphertext, iv, value_bytes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .bind(computer.id, `OLD_${i}`, ciphertext, iv, value.length, 'x', 'x')
        .run();
    }
    const err = await expectError(await w.api(`/${computer.id}/start`, { method: 'POST' }), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toMatch(/environment variables are over the limits.*DELETE …\/env\/\{name\}/);
    expect(peer.requests.filter((r) => r.type === 'computer.start')).toEqual([]);
    expect((await getComputer(w, computer.id)).status_reason).toMatch(/^boot failed: the computer's environment variables are over the limits/);
    await expectJson(await w.api(`/${computer.id}/env/OLD_0`, { method: 'DELETE' }), 200);
    await expectJson(await w.api(`/${computer.id}/env/OLD_1`, { method: 'DELETE' }), 200);
    await expectJson(await w.api(`/${computer.id}/start`, { method: 'POST' }), 200);
  });
});
