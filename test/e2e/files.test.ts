/**
 * The files API on a real computer, as client code calls it: what it makes is
 * there for exec to see (and belongs to user), what exec makes it sees, and
 * its errors are the page's statuses in the envelope.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';
import { expectEnvelope } from './expect-error.ts';

let api: Client;
let id: string;
const files = (p = '') => `/computers/${id}/files${p}`;

beforeAll(async () => {
  api = await newTenant('files');
  id = await api.runningComputer('files');
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
});

describe('files on a real computer', () => {
  it('mkdir, chmod, rename, copy and delete change what exec sees; what they make belongs to user', async () => {
    expect((await api.post(files('/mkdir'), { path: '/workspace/proj/src' })).status).toBe(200);
    await api.exec(id, 'echo hello > /workspace/proj/src/main.txt');
    expect((await api.post(files('/chmod'), { path: '/workspace/proj/src/main.txt', mode: '0600' })).status).toBe(200);
    const renamed = await api.post<{ data: { path: string; is_dir: boolean } }>(files('/rename'), { from: '/workspace/proj', to: '/workspace/moved/proj' });
    expect(renamed.body.data).toMatchObject({ path: '/workspace/moved/proj', is_dir: true });
    expect((await api.post(files('/copy'), { from: '/workspace/moved/proj', to: '/workspace/copy', recursive: true })).status).toBe(200);
    const seen = await api.exec(id, 'stat -c "%U %a" /workspace/moved/proj/src /workspace/moved/proj/src/main.txt /workspace/copy/src/main.txt; cat /workspace/copy/src/main.txt');
    expect(seen.body.output).toBe('user 755\nuser 600\nuser 600\nhello\n');
    const del = await api.call('DELETE', files(), { path: '/workspace/moved' });
    expect(del.status).toBe(200);
    expect((await api.call('DELETE', files('?path=/workspace/copy'))).status).toBe(200);
    expect((await api.exec(id, 'ls /workspace')).body.output).toBe('');
  });

  it('stat and listings show what exec made, with lstat semantics', async () => {
    await api.exec(id, 'mkdir -p /workspace/ls && cd /workspace/ls && printf abc > f && ln -s f link && mkdir d');
    const stat = await api.post<{ data: Record<string, unknown> }>(files('/stat'), { path: '/workspace/ls/link' });
    expect(stat.body.data).toMatchObject({ path: '/workspace/ls/link', is_symlink: true, is_dir: false, symlink_target: 'f' });
    expect((stat.body.data.mode as number) & 0o170000).toBe(0o120000);
    const list = await api.get<{ path: string; entries: { name: string; size: number; is_dir: boolean }[] }>(files('?path=/workspace/ls'));
    expect(list.body.path).toBe('/workspace/ls');
    expect(list.body.entries.map((e) => [e.name, e.is_dir])).toEqual([
      ['d', true],
      ['f', false],
      ['link', false],
    ]);
    const rd = await api.get<{ data: { entries: { name: string; is_symlink: boolean }[] } }>(files('/readdir?path=/workspace/ls'));
    expect(rd.body.data.entries.find((e) => e.name === 'link')?.is_symlink).toBe(true);
  });

  it('a missing path is a 404, a refusal where even root may not write a 403, a file where a directory is expected a 409', async () => {
    expectEnvelope(await api.raw('POST', files('/stat'), { body: '{"path":"/workspace/nope"}', headers: { 'content-type': 'application/json' } }), 404, 'NOT_FOUND');
    expectEnvelope(await api.raw('POST', files('/mkdir'), { body: '{"path":"/sys/hangar"}', headers: { 'content-type': 'application/json' } }), 403, 'FORBIDDEN');
    await api.exec(id, 'touch /workspace/plain');
    expectEnvelope(await api.raw('GET', files('?path=/workspace/plain')), 409, 'CONFLICT');
    expectEnvelope(await api.raw('POST', files('/mkdir'), { body: '{"path":"/workspace/plain/sub"}', headers: { 'content-type': 'application/json' } }), 409, 'CONFLICT');
  });
});
