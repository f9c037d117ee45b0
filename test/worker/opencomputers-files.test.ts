import { describe, expect, it } from 'vitest';
import { byteRange } from '../../durable-objects/host/host-files.ts';
import { MultipartError, filePart, multipartBoundary } from '../../durable-objects/host/multipart.ts';
import { createTenant, expectError, expectJson, tenantFetch } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { HostModePeer, OC, registerTenantHost } from './host-mode-peer.ts';

useAgentPeers();

async function onlineHost() {
  const t = await createTenant();
  const h = await registerTenantHost(t.apiKey);
  const peer = await HostModePeer.online(h.key);
  const api = (path: string, init: Parameters<typeof tenantFetch>[2] = {}) => tenantFetch(t.apiKey, `${OC}/hosts/${h.id}${path}`, init);
  return { t, h, peer, api };
}

const entry = (path: string, is_dir = false) => ({ name: path.split('/').pop()!, path, size: is_dir ? 0 : 5, is_dir, modified_at: '2026-01-01T00:00:00Z', mode: 0o644, is_symlink: false, symlink_target: null });

describe('files on a tenant host: listing, stat, mkdir, delete', () => {
  it('asks the agent, with the path as given (relative ones are the agent user’s home’s), and answers in the page shape', async () => {
    const { peer, api } = await onlineHost();
    peer.on('fs.list', (r) => ({ data: { path: `/home/alice/${r.path}`, entries: [entry('/home/alice/projects/my-app', true)], truncated: false } }));
    const list = await expectJson<{ path: string; entries: unknown[] }>(await api('/fs/list?path=projects'), 200);
    expect(list).toEqual({ path: '/home/alice/projects', entries: [entry('/home/alice/projects/my-app', true)], truncated: false });
    expect(await peer.take('fs.list')).toMatchObject({ path: 'projects' });
    // GET …/fs is the same listing; no path is the home.
    await expectJson(await api('/fs'), 200);
    expect(await peer.take('fs.list')).toMatchObject({ path: '.' });

    peer.on('fs.stat', (r) => ({ data: entry(r.path) }));
    expect(await expectJson(await api('/fs/stat?path=/etc/hosts'), 200)).toMatchObject({ path: '/etc/hosts', is_dir: false, mode: 0o644, is_symlink: false });
    peer.on('fs.mkdir', (r) => ({ data: { path: `/home/alice/${r.path}` } }));
    const made = await expectJson(await api('/fs/mkdir', { method: 'POST', body: { path: 'a/b/c' } }), 201);
    expect(made).toMatchObject({ path: '/home/alice/a/b/c' });
    expect(await peer.take('fs.mkdir')).toMatchObject({ path: 'a/b/c' });
    expect((await api('/fs/delete?path=old.log', { method: 'DELETE' })).status).toBe(204);
    expect(await peer.take('fs.delete')).toMatchObject({ path: 'old.log', recursive: false });
    expect((await api('/fs?path=build&recursive=true', { method: 'DELETE' })).status).toBe(204);
    expect(await peer.take('fs.delete')).toMatchObject({ path: 'build', recursive: true });
  });

  it("the agent's refusals are 404, 403 and 409 in the envelope", async () => {
    const { peer, api } = await onlineHost();
    peer.on('fs.stat', () => ({ error: { code: 'NO_SUCH_PATH', message: 'no such file or directory: /nope' } }));
    expect((await expectError(await api('/fs/stat?path=/nope'), 404, 'NOT_FOUND')).error.message).toContain('/nope');
    peer.on('fs.list', () => ({ error: { code: 'PERMISSION_DENIED', message: 'permission denied: /root' } }));
    await expectError(await api('/fs/list?path=/root'), 403, 'FORBIDDEN');
    peer.on('fs.delete', () => ({ error: { code: 'CONFLICT', message: 'directory not empty: /x (delete it with recursive=true)' } }));
    await expectError(await api('/fs/delete?path=/x', { method: 'DELETE' }), 409, 'CONFLICT');
    peer.on('fs.prepare', () => ({ error: { code: 'PERMISSION_DENIED', message: 'permission denied: /etc/shadow' } }));
    await expectError(await api('/fs/download?path=/etc/shadow'), 403, 'FORBIDDEN');
  });

  it('bad parameters are 400s, an offline host 409, and an oversized upload 413, all before anything reaches the agent', async () => {
    const { peer, api, t, h } = await onlineHost();
    await expectError(await api('/fs/stat'), 400, 'VALIDATION_FAILED');
    await expectError(await api('/fs/stat?path='), 400, 'VALIDATION_FAILED');
    await expectError(await api('/fs/delete?path=x&recursive=maybe', { method: 'DELETE' }), 400, 'VALIDATION_FAILED');
    await expectError(await api('/fs/mkdir', { method: 'POST', body: { path: 'a\u0000b' } }), 400, 'VALIDATION_FAILED');
    const big = await api('/fs/upload?path=big.bin', { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024), headers: { 'content-type': 'application/octet-stream' } });
    await expectError(big, 413, 'PAYLOAD_TOO_LARGE');
    expect(peer.requests.filter((r) => r.type.startsWith('fs.'))).toEqual([]);
    peer.close();
    const offline = await tenantFetch(t.apiKey, `${OC}/hosts/${h.id}/fs/list`);
    await expectError(offline, 409, 'HOST_NOT_CONNECTED');
  });
});

describe('byte ranges and multipart bodies', () => {
  it('serves one range; several ranges or a bad header are the whole file; a range outside is unsatisfiable', () => {
    expect(byteRange('bytes=0-9', 100)).toEqual({ start: 0, length: 10 });
    expect(byteRange('bytes=90-', 100)).toEqual({ start: 90, length: 10 });
    expect(byteRange('bytes=-5', 100)).toEqual({ start: 95, length: 5 });
    expect(byteRange('bytes=50-500', 100)).toEqual({ start: 50, length: 50 });
    expect(byteRange('bytes=0-1,5-6', 100)).toBeNull();
    expect(byteRange('bytes=9-3', 100)).toBeNull();
    expect(byteRange(null, 100)).toBeNull();
    expect(byteRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(byteRange('bytes=-0', 100)).toBe('unsatisfiable');
    expect(byteRange('bytes=0-', 0)).toBe('unsatisfiable');
  });

  /** A body delivered in pieces of `size` bytes, so boundaries fall anywhere. */
  const chunked = (bytes: Uint8Array, size: number) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (let at = 0; at < bytes.length; at += size) c.enqueue(bytes.slice(at, at + size));
        c.close();
      },
    });
  const readAll = async (s: ReadableStream<Uint8Array>) => new Uint8Array(await new Response(s).arrayBuffer());

  it('finds the file part after other fields, byte-exact whatever the chunking, and refuses a body cut short', async () => {
    const boundary = '----hangarTestBoundary7MA4YWxk';
    expect(multipartBoundary(`multipart/form-data; boundary=${boundary}`)).toBe(boundary);
    expect(multipartBoundary(`multipart/form-data; boundary="${boundary}"`)).toBe(boundary);
    expect(multipartBoundary('application/json')).toBeNull();
    const content = new Uint8Array(5000).map((_, i) => (i * 7) % 256);
    // The content holds a near-miss of the delimiter.
    content.set(new TextEncoder().encode(`\r\n--${boundary.slice(0, -1)}`), 1000);
    const enc = new TextEncoder();
    const body = new Uint8Array([
      ...enc.encode(`preamble\r\n--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--${boundary}\r\n`),
      ...enc.encode(`Content-Disposition: form-data; name="upload"; filename="data.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      ...content,
      ...enc.encode(`\r\n--${boundary}--\r\n`),
    ]);
    for (const size of [1, 7, 64, 1000, body.length]) {
      const part = await filePart(chunked(body, size), boundary);
      expect(part.filename).toBe('data.bin');
      expect(await readAll(part.bytes), `chunks of ${size}`).toEqual(content);
    }
    const cut = body.slice(0, body.length - 20);
    const part = await filePart(chunked(cut, 100), boundary);
    await expect(readAll(part.bytes)).rejects.toThrow(MultipartError);
    await expect(filePart(chunked(enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n--${boundary}--\r\n`), 10), boundary)).rejects.toThrow(/no file part/);
  });
});
