/**
 * The files routes against a scripted agent: the bodies clients send become
 * the right file operations, answers have the shapes, and what the
 * computer says about a path becomes the right status in the envelope.
 */
import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers, type ComputerPeer } from './agent-peer.ts';
import { runningComputer, stoppedComputer, world } from './computer-fixtures.ts';
import type { FsRequest, FsStat } from '../../schema/guest.ts';

useAgentPeers();

const T = 1_700_000_000.25;
const ISO_T = '2023-11-14T22:13:20Z';
const dirStat = (path: string): FsStat => ({ path, size: 4096, mode: 0o40755, is_dir: true, is_symlink: false, modified_at: T, uid: 1000, gid: 1000 });

/** Answers fs requests from a table keyed by op; records them. */
function scriptFs(peer: ComputerPeer, answer: (r: FsRequest) => ReturnType<Parameters<ComputerPeer['onRequest']>[1]>): FsRequest[] {
  const seen: FsRequest[] = [];
  peer.onRequest('fs', (req) => {
    seen.push(req.request);
    return answer(req.request) as never;
  });
  return seen;
}

describe('files routes', () => {
  it('GET /files lists {path, entries} (and the same entries as data); readdir answers {data: {path, entries}}', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const seen = scriptFs(peer, () => ({
      data: {
        path: '/workspace',
        truncated: false,
        entries: [
          { name: 'a.txt', path: '/workspace/a.txt', size: 3, mode: 0o100644, is_dir: false, is_symlink: false, modified_at: T },
          { name: 'link', path: '/workspace/link', size: 7, mode: 0o120777, is_dir: true, is_symlink: true, modified_at: T },
        ],
      },
    }));
    const list = await expectJson<Record<string, unknown>>(await w.api(`/${computer.id}/files?path=/workspace`), 200);
    const entries = [
      { name: 'a.txt', path: '/workspace/a.txt', size: 3, is_dir: false, modified_at: ISO_T },
      { name: 'link', path: '/workspace/link', size: 7, is_dir: true, modified_at: ISO_T },
    ];
    expect(list).toEqual({ path: '/workspace', entries, data: entries, truncated: false, next_after: null });
    const rd = await expectJson(await w.api(`/${computer.id}/files/readdir?path=/workspace`), 200);
    expect(rd).toEqual({
      data: {
        path: '/workspace',
        truncated: false,
        next_after: null,
        entries: [
          { name: 'a.txt', is_dir: false, is_symlink: false, size: 3, modified_at: ISO_T },
          { name: 'link', is_dir: true, is_symlink: true, size: 7, modified_at: ISO_T },
        ],
      },
    });
    await expectJson(await w.api(`/${computer.id}/files`), 200);
    await expectJson(await w.api(`/${computer.id}/files?path=/workspace&after=a.txt`), 200);
    expect(seen).toEqual([
      { op: 'list', path: '/workspace' },
      { op: 'list', path: '/workspace' },
      { op: 'list', path: '~' },
      { op: 'list', path: '/workspace', after: 'a.txt' },
    ]);
  });

  it('stat, mkdir, rename, copy and chmod send what the page says (defaults included) and answer {data: stat}', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const seen = scriptFs(peer, (r) => ({ data: dirStat('path' in r ? r.path : r.to) }));
    const post = (op: string, body: unknown) => w.api(`/${computer.id}/files/${op}`, { method: 'POST', body });
    const stat = await expectJson<{ data: Record<string, unknown> }>(await post('stat', { path: '/workspace' }), 200);
    expect(stat.data).toEqual({ path: '/workspace', size: 4096, mode: 0o40755, is_dir: true, is_symlink: false, modified_at: ISO_T, uid: 1000, gid: 1000 });
    await expectJson(await post('mkdir', { path: '/w/a/b' }), 200);
    await expectJson(await post('mkdir', { path: '/w/c', recursive: false, mode: '0700' }), 200);
    await expectJson(await post('rename', { from: '/w/a', to: '/w/z/a' }), 200);
    await expectJson(await post('copy', { from: '/w/z', to: '/w/y' }), 200);
    await expectJson(await post('copy', { from: '/w/z', to: '/w/x', recursive: true }), 200);
    await expectJson(await post('chmod', { path: '/w/x', mode: '4755' }), 200);
    await expectJson(await post('chmod', { path: '/w/x', mode: '0o644' }), 200);
    expect(seen).toEqual([
      { op: 'stat', path: '/workspace' },
      { op: 'mkdir', path: '/w/a/b', recursive: true, mode: 0o755 },
      { op: 'mkdir', path: '/w/c', recursive: false, mode: 0o700 },
      { op: 'rename', from: '/w/a', to: '/w/z/a' },
      { op: 'copy', from: '/w/z', to: '/w/y', recursive: false },
      { op: 'copy', from: '/w/z', to: '/w/x', recursive: true },
      { op: 'chmod', path: '/w/x', mode: 0o4755 },
      { op: 'chmod', path: '/w/x', mode: 0o644 },
    ]);
    for (const mode of ['999', '755 ', 'rwx', '77777', '', 493]) {
      const err = await expectError(await post('chmod', { path: '/w/x', mode }), 400, 'VALIDATION_FAILED');
      expect(err.error.message).toMatch(/^mode/);
    }
    expect(seen).toHaveLength(8);
  });

  it('DELETE takes the path in a JSON body or in ?path=, recursive unless told otherwise', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const seen = scriptFs(peer, (r) => ({ data: { path: 'path' in r ? r.path : '', deleted: true } }));
    expect(await expectJson(await w.api(`/${computer.id}/files`, { method: 'DELETE', body: { path: '/w/a' } }), 200)).toEqual({ data: { path: '/w/a', deleted: true }, success: true });
    await expectJson(await w.api(`/${computer.id}/files?path=/w/b`, { method: 'DELETE' }), 200);
    await expectJson(await w.api(`/${computer.id}/files?path=/w/c&recursive=false`, { method: 'DELETE' }), 200);
    await expectJson(await w.api(`/${computer.id}/files?path=/ignored`, { method: 'DELETE', body: { path: '/w/d', recursive: false } }), 200);
    expect(seen).toEqual([
      { op: 'delete', path: '/w/a', recursive: true },
      { op: 'delete', path: '/w/b', recursive: true },
      { op: 'delete', path: '/w/c', recursive: false },
      { op: 'delete', path: '/w/d', recursive: false },
    ]);
    const err = await expectError(await w.api(`/${computer.id}/files`, { method: 'DELETE' }), 400, 'VALIDATION_FAILED');
    expect(err.error.message).toMatch(/path is required/);
    expect(seen).toHaveLength(4);
  });

  it("what the computer says about a path is the status: 404, 403, 409, 507, each in the envelope, in the API's words", async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const codes = {
      NO_SUCH_PATH: [404, 'NOT_FOUND', 'no such file or directory: /w/x'],
      FORBIDDEN: [403, 'FORBIDDEN', 'permission denied: /w/x'],
      CONFLICT: [409, 'CONFLICT', /^the path is in the way .*: \/w\/x$/],
      NO_SPACE: [507, 'INSUFFICIENT_STORAGE', "no space left on the computer's disk: /w/x"],
      BAD_REQUEST: [400, 'BAD_REQUEST', 'the computer refused to stat /w/x'],
    } as const;
    for (const [agentCode, [status, code, message]] of Object.entries(codes)) {
      // What the computer itself says never reaches the client.
      peer.onRequest('fs', () => ({ error: { code: agentCode as keyof typeof codes, message: 'made up by the computer' } }));
      const err = await expectError(await w.api(`/${computer.id}/files/stat`, { method: 'POST', body: { path: '/w/x' } }), status, code);
      expect(err.error.message).toMatch(message);
    }
    peer.onRequest('fs', () => ({ error: { code: 'NO_SUCH_PATH', message: 'made up' } }));
    const moved = await expectError(await w.api(`/${computer.id}/files/rename`, { method: 'POST', body: { from: '/w/a', to: '/w/b' } }), 404, 'NOT_FOUND');
    expect(moved.error.message).toBe('no such file or directory: /w/a -> /w/b');
  });

  it('a stopped computer is a 409 COMPUTER_NOT_RUNNING, an old agent a 502, and neither is asked anything', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    const asked = peer.requests.length;
    const err = await expectError(await w.api(`/${computer.id}/files?path=/`), 409, 'COMPUTER_NOT_RUNNING');
    expect(err.error.message).toBe('computer is not running');
    await expectError(await w.api(`/${computer.id}/files/mkdir`, { method: 'POST', body: { path: '/x' } }), 409, 'COMPUTER_NOT_RUNNING');
    expect(peer.requests.slice(asked)).toEqual([]);

    const old = await runningComputer(w);
    await old.peer.attach('running', { protocol: { major: 1, minor: 2 } });
    const tooOld = await expectError(await w.api(`/${old.computer.id}/files?path=/`), 502, 'AGENT_ERROR');
    expect(tooOld.error.message).toMatch(/too old .* protocol 1\.6/);
  });

  it('bad paths are 400s naming the field, before the computer is asked', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const asked = peer.requests.length;
    for (const path of ['', 'a\u0000b', 'x'.repeat(4097)]) {
      const err = await expectError(await w.api(`/${computer.id}/files/stat`, { method: 'POST', body: { path } }), 400, 'VALIDATION_FAILED');
      expect(err.error.message).toMatch(/^path/);
    }
    await expectError(await w.api(`/${computer.id}/files?path=${'y'.repeat(4097)}`), 400, 'VALIDATION_FAILED');
    expect(peer.requests.slice(asked)).toEqual([]);
  });
});
