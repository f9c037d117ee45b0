/**
 * The files routes that move bytes, inside workerd: the real Worker and
 * ComputerObject, the file's bytes on a relay stream (target computer_file)
 * of a scripted agent that plays the computer.
 */
import { describe, expect, it } from 'vitest';
import { SELF, env } from 'cloudflare:test';
import { BASE, expectError, expectJson, operatorFetch } from './helpers.ts';
import { useAgentPeers, type ComputerPeer } from './agent-peer.ts';
import { runningComputer, world, type World } from './computer-fixtures.ts';
import { equalBytes, join, randomBytes } from './ws-client.ts';
import type { PeerStream } from './relay-peer.ts';
import type { FsStat } from '../../schema/guest.ts';
import { mintExportToken } from '../../worker/files/export-token.ts';
import type { Env } from '../../worker/env.ts';

useAgentPeers();

const T = 1_700_000_000.25;
const fileStat = (path: string, size: number): FsStat => ({ path, size, mode: 0o100644, is_dir: false, is_symlink: false, modified_at: T, uid: 1000, gid: 1000 });
const dirStat = (path: string): FsStat => ({ path, size: 4096, mode: 0o40755, is_dir: true, is_symlink: false, modified_at: T, uid: 1000, gid: 1000 });
const MAX_UPLOAD = 1048576;

/** A request with any body (helpers' apiFetch sends JSON), with the tenant's key unless `auth` is false. */
function raw(w: World, path: string, init: RequestInit & { auth?: boolean } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.auth !== false) headers.set('authorization', `Bearer ${w.tenant.apiKey}`);
  return SELF.fetch(`${BASE}${path.startsWith('/api/') ? '' : '/api/v1/computers'}${path}`, { ...init, headers });
}

/** Every stat the object asks is answered from `table` (NO_SUCH_PATH for what is not in it). */
function statsFrom(peer: ComputerPeer, table: Record<string, FsStat>): void {
  peer.onRequest('fs', (req) => {
    const r = req.request;
    const st = r.op === 'stat' ? table[r.path] : undefined;
    return st ? { data: st } : { error: { code: 'NO_SUCH_PATH', message: `${JSON.stringify(r)}: not scripted` } };
  });
}

/** Plays the computer's side of a read: sends `bytes` within the object's window as it credits, then the FIN. */
async function serve(peer: ComputerPeer, s: PeerStream, bytes: Uint8Array): Promise<void> {
  peer.relay.accept(s);
  for (let at = 0; at < bytes.byteLength; ) {
    const room = s.peerCredit + s.open.window - s.sent;
    if (room <= 0) {
      await peer.relay.until(() => s.peerCredit + s.open.window > s.sent, 'credit from the object');
      continue;
    }
    const n = Math.min(room, 64 * 1024, bytes.byteLength - at);
    peer.relay.data(s, bytes.subarray(at, at + n));
    at += n;
  }
  peer.relay.close(s);
}

/** Takes what the object sends on a write stream, crediting as it comes, until its FIN or reset. */
async function take(peer: ComputerPeer, s: PeerStream): Promise<void> {
  while (!s.closed && !s.reset) {
    if (s.received - s.credited >= s.window / 2) peer.relay.credit(s);
    await peer.relay.until(() => s.closed || s.reset || s.received - s.credited >= s.window / 2, 'bytes, a FIN or a reset').catch(() => {});
  }
}

/** The computer's one-line answer to a write or unpack, then its FIN. */
function answerLine(peer: ComputerPeer, s: PeerStream, line: Record<string, unknown>): void {
  peer.relay.data(s, JSON.stringify(line) + '\n');
  peer.relay.close(s);
}

describe('file bytes over the relay', () => {
  it('download streams the file with its length, type and validators; a Range asks the computer for that part only; one outside is a 416', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const data = randomBytes(300_000, 3);
    statsFrom(peer, { '/workspace/report.json': fileStat('/workspace/report.json', data.byteLength) });

    const pending = raw(w, `/${computer.id}/files/download?path=/workspace/report.json`);
    const s = await peer.relay.nextOpen();
    expect(s.open.target).toEqual({ kind: 'computer_file', file: { op: 'read', path: '/workspace/report.json', offset: 0, length: 300_000 } });
    await serve(peer, s, data);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(Object.fromEntries(['content-type', 'content-length', 'accept-ranges', 'etag'].map((h) => [h, res.headers.get(h)]))).toEqual({
      'content-type': 'application/json',
      'content-length': '300000',
      'accept-ranges': 'bytes',
      etag: `"${(300_000).toString(16)}-${Math.round(T * 1000).toString(16)}"`,
    });
    expect(res.headers.get('last-modified')).toBe(new Date(Math.round(T * 1000)).toUTCString());
    expect(equalBytes(new Uint8Array(await res.arrayBuffer()), data)).toBe(true);

    const taken = new Set([s.open.stream_id]);
    const part = raw(w, `/${computer.id}/files/download?path=/workspace/report.json`, { headers: { range: 'bytes=1000-1999' } });
    const p = await peer.relay.nextOpen(taken);
    expect(p.open.target).toEqual({ kind: 'computer_file', file: { op: 'read', path: '/workspace/report.json', offset: 1000, length: 1000 } });
    await serve(peer, p, data.subarray(1000, 2000));
    const got = await part;
    expect(got.status).toBe(206);
    expect(got.headers.get('content-range')).toBe('bytes 1000-1999/300000');
    expect(equalBytes(new Uint8Array(await got.arrayBuffer()), data.subarray(1000, 2000))).toBe(true);
    taken.add(p.open.stream_id);

    const outside = await raw(w, `/${computer.id}/files/download?path=/workspace/report.json`, { headers: { range: 'bytes=300000-' } });
    expect(outside.headers.get('content-range')).toBe('bytes */300000');
    await expectError(outside, 416, 'RANGE_NOT_SATISFIABLE');
    expect(peer.relay.streams.size).toBe(2);
  });

  it('a download the computer ends short is a broken body, not a shorter file', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    statsFrom(peer, { '/workspace/a.bin': fileStat('/workspace/a.bin', 10_000) });
    const pending = raw(w, `/${computer.id}/files/download?path=/workspace/a.bin`);
    const s = await peer.relay.nextOpen();
    await serve(peer, s, randomBytes(4_000));
    const res = await pending;
    expect(res.headers.get('content-length')).toBe('10000');
    await expect(res.arrayBuffer()).rejects.toThrow();
  });

  it('POST /files/write sends the decoded bytes then a FIN, and answers the entry from the computer', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const data = randomBytes(70_000, 5);
    statsFrom(peer, { '/workspace/w.bin': fileStat('/workspace/w.bin', data.byteLength) });
    let b64 = '';
    for (let i = 0; i < data.byteLength; i += 30_000) b64 += btoa(String.fromCharCode(...data.subarray(i, i + 30_000)));
    const pending = w.api(`/${computer.id}/files/write`, { method: 'POST', body: { path: '/workspace/w.bin', content_base64: b64 } });
    const s = await peer.relay.nextOpen();
    expect(s.open.target).toEqual({ kind: 'computer_file', file: { op: 'write', path: '/workspace/w.bin' } });
    peer.relay.accept(s);
    await take(peer, s);
    expect(s.reset).toBeNull();
    expect(equalBytes(peer.relay.bytesOf(s), data)).toBe(true);
    answerLine(peer, s, { ok: true, path: '/workspace/w.bin', size: data.byteLength });
    const entry = { name: 'w.bin', path: '/workspace/w.bin', size: 70_000, is_dir: false, modified_at: '2023-11-14T22:13:20Z' };
    expect(await expectJson(await pending, 200)).toEqual({ ...entry, data: entry });
  });

  it('a raw upload goes in pieces of a relay frame; past MAX_UPLOAD_BYTES it is a 413 and the stream is reset, so the computer keeps nothing', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    statsFrom(peer, { '/workspace/up.bin': fileStat('/workspace/up.bin', 600_000) });
    // A body of many small chunks, as clients send them.
    const data = randomBytes(600_000, 9);
    const chunked = (bytes: Uint8Array) => {
      let at = 0;
      return new ReadableStream<Uint8Array>({
        pull(c) {
          if (at >= bytes.byteLength) return c.close();
          c.enqueue(bytes.slice(at, at + 4096));
          at += 4096;
        },
      });
    };
    const pending = raw(w, `/${computer.id}/files/upload?path=/workspace/up.bin`, { method: 'POST', body: chunked(data), headers: { 'content-type': 'application/octet-stream' } });
    const s = await peer.relay.nextOpen();
    peer.relay.accept(s);
    await take(peer, s);
    expect(equalBytes(peer.relay.bytesOf(s), data)).toBe(true);
    // 4 KiB chunks joined: two whole frames of 256 KiB and the rest.
    expect(s.frames.map((f) => f.payload.byteLength)).toEqual([262_144, 262_144, 600_000 - 2 * 262_144]);
    answerLine(peer, s, { ok: true, path: '/workspace/up.bin', size: 600_000 });
    const up = await expectJson<{ files: { path: string; size: number }[] }>(await pending, 200);
    expect(up.files).toEqual([expect.objectContaining({ path: '/workspace/up.bin', size: 600_000 })]);

    // Declared too large: refused before the computer is asked.
    const streams = peer.relay.streams.size;
    const declared = await raw(w, `/${computer.id}/files/upload?path=/workspace/big.bin`, {
      method: 'POST',
      body: new Uint8Array(MAX_UPLOAD + 1),
      headers: { 'content-type': 'application/octet-stream' },
    });
    await expectError(declared, 413, 'PAYLOAD_TOO_LARGE');
    expect(peer.relay.streams.size).toBe(streams);

    // Not declared (chunked): the object stops at the limit and resets the stream.
    const over = raw(w, `/${computer.id}/files/upload?path=/workspace/big.bin`, { method: 'POST', body: chunked(randomBytes(MAX_UPLOAD + 100_000)), headers: { 'content-type': 'application/octet-stream' } });
    const big = await peer.relay.nextOpen(new Set([...peer.relay.streams.keys()]));
    peer.relay.accept(big);
    await take(peer, big);
    expect(big.closed).toBeNull();
    expect(big.reset?.code).toBe('closed');
    expect(big.received).toBeLessThanOrEqual(MAX_UPLOAD);
    const err = await expectError(await over, 413, 'PAYLOAD_TOO_LARGE');
    expect(err.error.message).toBe(`the upload is larger than ${MAX_UPLOAD} bytes`);
  });

  it('the computer refusing a write before the body is in (no space) is a 507, and the rest of the body is not sent', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const pending = raw(w, `/${computer.id}/files/upload?path=/workspace/full.bin`, { method: 'POST', body: randomBytes(MAX_UPLOAD - 10), headers: { 'content-type': 'application/octet-stream' } });
    const s = await peer.relay.nextOpen();
    peer.relay.accept(s, 64 * 1024);
    await peer.relay.until(() => s.received === s.window, 'a window of the body');
    answerLine(peer, s, { ok: false, code: 'NO_SPACE', message: 'made up by the computer' });
    const err = await expectError(await pending, 507, 'INSUFFICIENT_STORAGE');
    expect(err.error.message).toBe("no space left on the computer's disk: /workspace/full.bin");
    await peer.relay.until(() => s.reset, 'the reset');
    expect(s.received).toBe(64 * 1024);
  });

  it('uploads the page does not allow are 400s saying why, before the computer is asked', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const octet = { 'content-type': 'application/octet-stream' };
    const noPath = await expectError(await raw(w, `/${computer.id}/files/upload`, { method: 'POST', body: 'x', headers: octet }), 400, 'VALIDATION_FAILED');
    expect(noPath.error.message).toMatch(/path is required/);
    const noBoundary = await expectError(await raw(w, `/${computer.id}/files/upload?path=/w`, { method: 'POST', body: 'x', headers: { 'content-type': 'multipart/form-data' } }), 400, 'VALIDATION_FAILED');
    expect(noBoundary.error.message).toMatch(/boundary/);
    await expectError(await raw(w, `/${computer.id}/files/upload?path=/w&format=rar&extract=true`, { method: 'POST', body: 'x', headers: octet }), 400, 'VALIDATION_FAILED');
    await expectError(await w.api(`/${computer.id}/files/write`, { method: 'POST', body: { path: '/w' } }), 400, 'VALIDATION_FAILED');
    await expectError(await w.api(`/${computer.id}/files/write`, { method: 'POST', body: { path: '/w', content_base64: 'not base64!' } }), 400, 'VALIDATION_FAILED');
    expect(peer.relay.streams.size).toBe(0);
  });

  it('export: the link serves a file as an attachment without a key, a directory as a tar.gz; expired, tampered or foreign links are refused', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const data = randomBytes(5_000, 11);
    statsFrom(peer, { '/workspace/r.pdf': fileStat('/workspace/r.pdf', data.byteLength), '/workspace/out': dirStat('/workspace/out') });
    const ex = await expectJson<{ url: string; expires_at: string; kind: string; size: number; data: { url: string } }>(
      await w.api(`/${computer.id}/files/export`, { method: 'POST', body: { path: '/workspace/r.pdf', expires_in: 600 } }),
      200,
    );
    expect(ex).toMatchObject({ kind: 'file', size: 5_000, data: { url: ex.url } });
    expect(ex.url).toMatch(/^https:\/\/api\.test\/api\/v1\/files\/exports\/[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(Math.abs(new Date(ex.expires_at).getTime() - (Date.now() + 600_000))).toBeLessThan(5_000);
    const path = new URL(ex.url).pathname;
    const pending = raw(w, path, { auth: false });
    const s = await peer.relay.nextOpen();
    expect(s.open.target).toEqual({ kind: 'computer_file', file: { op: 'read', path: '/workspace/r.pdf', offset: 0, length: 5_000 } });
    await serve(peer, s, data);
    const got = await pending;
    expect(got.status).toBe(200);
    expect(got.headers.get('content-disposition')).toMatch(/^attachment; filename="r.pdf"/);
    expect(equalBytes(new Uint8Array(await got.arrayBuffer()), data)).toBe(true);

    const dir = await expectJson<{ url: string; kind: string }>(await w.api(`/${computer.id}/files/export`, { method: 'POST', body: { path: '/workspace/out' } }), 200);
    expect(dir.kind).toBe('dir');
    const packed = raw(w, new URL(dir.url).pathname, { auth: false });
    const d = await peer.relay.nextOpen(new Set([s.open.stream_id]));
    expect(d.open.target).toEqual({ kind: 'computer_file', file: { op: 'pack', path: '/workspace/out' } });
    await serve(peer, d, new Uint8Array([0x1f, 0x8b, 8, 0]));
    const tgz = await packed;
    expect(tgz.headers.get('content-type')).toBe('application/gzip');
    expect(tgz.headers.get('content-disposition')).toMatch(/^attachment; filename="out.tar.gz"/);
    expect(join([new Uint8Array(await tgz.arrayBuffer())])).toEqual(new Uint8Array([0x1f, 0x8b, 8, 0]));

    for (const expires_in of [0, 604_801, 1.5]) {
      await expectError(await w.api(`/${computer.id}/files/export`, { method: 'POST', body: { path: '/workspace/r.pdf', expires_in } }), 400, 'VALIDATION_FAILED');
    }
    const claims = { org_id: w.tenant.orgId, computer_id: computer.id, path: '/workspace/r.pdf', kind: 'file' as const, credential_id: null };
    const expired = await mintExportToken(env as unknown as Env, claims, -10);
    const late = await expectError(await raw(w, `/api/v1/files/exports/${expired.token}`, { auth: false }), 401, 'UNAUTHORIZED');
    expect(late.error.message).toMatch(/expired/);
    const tampered = path.slice(0, -3) + (path.endsWith('AAA') ? 'BBB' : 'AAA');
    await expectError(await raw(w, tampered, { auth: false }), 401, 'UNAUTHORIZED');
    // A link naming a computer of another organization finds nothing.
    const other = await world();
    const foreign = await mintExportToken(env as unknown as Env, { ...claims, org_id: other.tenant.orgId }, 600);
    await expectError(await raw(w, `/api/v1/files/exports/${foreign.token}`, { auth: false }), 404, 'NOT_FOUND');
    expect(peer.relay.streams.size).toBe(2);

    // Revoking the key that made a link ends the link.
    const revoked = await operatorFetch(`/api/v1/admin/organizations/${w.tenant.orgId}/api-keys/${w.tenant.keyId}`, { method: 'DELETE' });
    expect(revoked.status).toBe(200);
    const ended = await expectError(await raw(w, path, { auth: false }), 401, 'UNAUTHORIZED');
    expect(ended.error.message).toBe('the API key that made this export link was revoked');
    expect(peer.relay.streams.size).toBe(2);
  });
});
