/**
 * Moving bytes in and out of a real computer through the files API: binary
 * content byte-exact (sha256), Range downloads, a large file with the agent's
 * memory flat, multipart uploads of several files and of archives, raw
 * uploads, export links fetched without a key and refused once expired.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hangar, newTenant, rawFetch, type Client } from './client.ts';
import { expectEnvelope } from './expect-error.ts';

let api: Client;
let id: string;
let tmp: string;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const files = (p = '') => `/computers/${id}/files${p}`;
const shaInside = async (p: string) => (await api.exec(id, `sha256sum '${p}' | cut -d' ' -f1`)).body.output.trim();

async function download(p: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; bytes: Buffer }> {
  const res = await fetch(`${api.apiUrl}${files(`/download?path=${encodeURIComponent(p)}`)}`, { headers: { authorization: `Bearer ${api.key}`, ...headers } });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

/** POSTs a form as a browser would (multipart/form-data with its boundary). */
async function postForm<T>(p: string, form: FormData): Promise<{ status: number; body: T }> {
  const res = await fetch(`${api.apiUrl}${p}`, { method: 'POST', headers: { authorization: `Bearer ${api.key}` }, body: form });
  return { status: res.status, body: (await res.json()) as T };
}

/** The agent's resident memory in bytes. */
function agentRss(): number {
  const status = fs.readFileSync(`/proc/${hangar().agentPid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

beforeAll(async () => {
  api = await newTenant('files-bytes');
  id = await api.runningComputer('files-bytes');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'files-bytes-'));
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('file bytes on a real computer', () => {
  it('write (base64 and text) then download: byte-exact, the entry shape, Content-Type and Content-Length', async () => {
    const data = randomBytes(1024 * 1024 + 17);
    const w = await api.post<Record<string, unknown>>(files('/write'), { path: '/workspace/img/pic.png', content_base64: data.toString('base64') });
    expect(w.status).toBe(200);
    expect(w.body).toMatchObject({ name: 'pic.png', path: '/workspace/img/pic.png', size: data.length, is_dir: false });
    expect(w.body.modified_at).toMatch(/Z$/);
    expect(w.body.data).toMatchObject({ name: 'pic.png', size: data.length });
    expect(await shaInside('/workspace/img/pic.png')).toBe(sha(data));
    const d = await download('/workspace/img/pic.png');
    expect(d.status).toBe(200);
    expect(d.headers.get('content-type')).toBe('image/png');
    expect(d.headers.get('content-length')).toBe(String(data.length));
    expect(d.headers.get('accept-ranges')).toBe('bytes');
    expect(sha(d.bytes)).toBe(sha(data));
    expect((await api.post(files('/write'), { path: '~/notes/hello.txt', content: 'héllo\n' })).body).toMatchObject({ path: '/home/user/notes/hello.txt', size: 7 });
    expect((await api.exec(id, 'cat ~/notes/hello.txt; stat -c %U ~/notes/hello.txt')).body.output).toBe('héllo\nuser\n');
  });

  it('a write where user may not write (/opt) is done as root and belongs to root; one beside user\'s files belongs to user', async () => {
    const data = randomBytes(64 * 1024 + 3);
    const w = await api.post<Record<string, unknown>>(files('/write'), { path: '/opt/tool/bin.dat', content_base64: data.toString('base64') });
    expect(w.status, JSON.stringify(w.body)).toBe(200);
    expect(w.body).toMatchObject({ path: '/opt/tool/bin.dat', size: data.length });
    expect(await shaInside('/opt/tool/bin.dat')).toBe(sha(data));
    expect((await api.exec(id, 'stat -c "%U %n" /opt/tool /opt/tool/bin.dat')).body.output).toBe('root /opt/tool\nroot /opt/tool/bin.dat\n');
    const st = await api.post<{ data: { uid: number } }>(files('/stat'), { path: '/opt/tool/bin.dat' });
    expect(st.body.data.uid).toBe(0);
    // The same upload into the home stays user's.
    const up = await fetch(`${api.apiUrl}${files('/upload?path=/home/user/bin.dat')}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${api.key}`, 'content-type': 'application/octet-stream' },
      body: data,
    });
    expect(up.status, await up.clone().text()).toBe(200);
    expect((await api.exec(id, 'stat -c %U /home/user/bin.dat; sha256sum /home/user/bin.dat | cut -d" " -f1')).body.output).toBe(`user\n${sha(data)}\n`);
  });

  it('Range: a part is a 206 with Content-Range, a suffix works, a range outside the file is a 416', async () => {
    const data = randomBytes(10_000);
    await api.post(files('/write'), { path: '/workspace/r.bin', content_base64: data.toString('base64') });
    const part = await download('/workspace/r.bin', { range: 'bytes=100-199' });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 100-199/10000');
    expect(part.bytes.equals(data.subarray(100, 200))).toBe(true);
    const tail = await download('/workspace/r.bin', { range: 'bytes=-10' });
    expect(tail.bytes.equals(data.subarray(9990))).toBe(true);
    const r = await api.raw('GET', files('/download?path=/workspace/r.bin'), { headers: { range: 'bytes=20000-' } });
    expectEnvelope(r, 416, 'RANGE_NOT_SATISFIABLE');
    expect(r.headers.get('content-range')).toBe('bytes */10000');
  });

  it('a large raw upload and its download are byte-exact, and the agent does not hold the file in memory', async () => {
    const size = 96 * 1024 * 1024;
    const file = path.join(tmp, 'big.bin');
    const fd = fs.openSync(file, 'w');
    const block = randomBytes(4 * 1024 * 1024);
    const hash = createHash('sha256');
    for (let i = 0; i < size / block.length; i++) {
      block[0] = i & 0xff;
      fs.writeSync(fd, block);
      hash.update(block);
    }
    fs.closeSync(fd);
    const digest = hash.digest('hex');
    // Upload: the agent's peak stays below the file's size (windows of a few MiB are in flight, never the file).
    const before = agentRss();
    let peak = before;
    const watch = setInterval(() => (peak = Math.max(peak, agentRss())), 50);
    try {
      const up = await fetch(`${api.apiUrl}${files('/upload?path=/workspace/big.bin')}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${api.key}`, 'content-type': 'application/octet-stream', 'content-length': String(size) },
        body: fs.createReadStream(file) as unknown as ReadableStream,
        duplex: 'half',
      } as RequestInit);
      expect(up.status).toBe(200);
    } finally {
      clearInterval(watch);
    }
    expect(peak - before).toBeLessThan(96 * 1024 * 1024);
    expect(await shaInside('/workspace/big.bin')).toBe(digest);
    // Download: the reader stops for a while; an agent that held the file would read the rest of it in now,
    // one under flow control waits with its windows full and allocates nothing (so GC cannot blur it).
    const res = await fetch(`${api.apiUrl}${files('/download?path=/workspace/big.bin')}`, { headers: { authorization: `Bearer ${api.key}` } });
    expect(res.headers.get('content-length')).toBe(String(size));
    const down = createHash('sha256');
    let got = 0;
    let stalled: { before: number; after: number } | undefined;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      down.update(chunk);
      got += chunk.byteLength;
      if (!stalled && got >= 8 * 1024 * 1024) {
        const at = agentRss();
        await new Promise((r) => setTimeout(r, 3000));
        stalled = { before: at, after: agentRss() };
      }
    }
    expect(got).toBe(size);
    expect(down.digest('hex')).toBe(digest);
    expect(stalled!.after - stalled!.before).toBeLessThan(48 * 1024 * 1024);
  }, 600_000);

  it('multipart: several files at once into a directory, byte-exact', async () => {
    const a = randomBytes(300_000);
    const b = randomBytes(5);
    const form = new FormData();
    form.append('path', '/workspace/multi');
    form.append('file', new Blob([a]), 'a.bin');
    form.append('file', new Blob([b]), 'sub/b.bin');
    const r = await postForm<{ files: { path: string; size: number }[]; success: boolean }>(files('/upload'), form);
    expect(r.status).toBe(200);
    expect(r.body.files.map((f) => [f.path, f.size])).toEqual([
      ['/workspace/multi/a.bin', a.length],
      ['/workspace/multi/sub/b.bin', 5],
    ]);
    expect(await shaInside('/workspace/multi/a.bin')).toBe(sha(a));
    expect(await shaInside('/workspace/multi/sub/b.bin')).toBe(sha(b));
    // One file to a path that is not a directory: that path.
    const one = new FormData();
    one.append('file', new Blob([b]), 'ignored-name.txt');
    const single = await postForm<{ files: { path: string }[] }>(`${files('/upload')}?path=/workspace/exact-name.bin`, one);
    expect(single.body.files[0].path).toBe('/workspace/exact-name.bin');
  });

  it('a multipart body that breaks off changes nothing', async () => {
    const boundary = 'XyZ123';
    const body = `--${boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n/workspace/broken\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\nsome bytes and then noth`;
    const r = await api.raw('POST', files('/upload'), { body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
    expectEnvelope(r, 400, 'VALIDATION_FAILED');
    expect((await api.exec(id, 'test -e /workspace/broken && echo there || echo none; ls -a /tmp | grep -c hangar-upload || true')).body.output).toBe('none\n0\n');
  });

  it('archives: a tar.gz in a multipart upload with extract, a plain tar and a zip as raw bodies, unpacked byte-exact', async () => {
    fs.mkdirSync(path.join(tmp, 'proj/src'), { recursive: true });
    const blob = randomBytes(200_000);
    fs.writeFileSync(path.join(tmp, 'proj/src/data.bin'), blob);
    fs.writeFileSync(path.join(tmp, 'proj/README'), 'read me');
    execFileSync('tar', ['-czf', path.join(tmp, 'proj.tgz'), '-C', tmp, 'proj']);
    const form = new FormData();
    form.append('path', '/workspace/unpacked');
    form.append('extract', 'true');
    form.append('file', new Blob([fs.readFileSync(path.join(tmp, 'proj.tgz'))]), 'proj.tgz');
    const r = await postForm<{ data: { extracted: { path: string; entries: number }[] } }>(files('/upload'), form);
    expect(r.status).toBe(200);
    expect(r.body.data.extracted[0].path).toBe('/workspace/unpacked');
    expect(await shaInside('/workspace/unpacked/proj/src/data.bin')).toBe(sha(blob));
    execFileSync('tar', ['-cf', path.join(tmp, 'proj.tar'), '-C', tmp, 'proj']);
    const tar = await api.raw('POST', files('/upload?path=/workspace/untarred&extract=true'), { body: fs.readFileSync(path.join(tmp, 'proj.tar')), headers: { 'content-type': 'application/x-tar' } });
    expect(tar.status).toBe(200);
    expect(await shaInside('/workspace/untarred/proj/src/data.bin')).toBe(sha(blob));
    expect((await api.exec(id, 'cat /workspace/untarred/proj/README')).body.output).toBe('read me');
    execFileSync('python3', ['-c', `import zipfile; z = zipfile.ZipFile('${path.join(tmp, 'z.zip')}', 'w'); z.writestr('inside/z.txt', 'zipped'); z.close()`]);
    const raw = await api.raw('POST', files('/upload?path=/workspace/zipped&extract=true'), { body: fs.readFileSync(path.join(tmp, 'z.zip')), headers: { 'content-type': 'application/zip' } });
    expect(raw.status).toBe(200);
    expect((await api.exec(id, 'cat /workspace/zipped/inside/z.txt')).body.output).toBe('zipped');
    const evil = await api.raw('POST', files('/upload?path=/workspace/zipped&extract=true'), { body: randomBytes(1000), headers: { 'content-type': 'application/gzip' } });
    expectEnvelope(evil, 400, 'BAD_REQUEST');
  });

  it('export: a link anyone can fetch without a key (a file, a directory as tar.gz), refused once expired', async () => {
    const data = randomBytes(50_000);
    await api.post(files('/write'), { path: '/workspace/share/report.pdf', content_base64: data.toString('base64') });
    const ex = await api.post<{ url: string; expires_at: string; data: { url: string } }>(files('/export'), { path: '/workspace/share/report.pdf' });
    expect(ex.status).toBe(200);
    expect(ex.body.data.url).toBe(ex.body.url);
    expect(new Date(ex.body.expires_at).getTime()).toBeGreaterThan(Date.now() + 50 * 60_000);
    const got = await fetch(ex.body.url);
    expect(got.status).toBe(200);
    expect(got.headers.get('content-disposition')).toMatch(/attachment; filename="report.pdf"/);
    expect(sha(Buffer.from(await got.arrayBuffer()))).toBe(sha(data));
    const dir = await api.post<{ url: string }>(files('/export'), { path: '/workspace/share' });
    const tgz = Buffer.from(await (await fetch(dir.body.url)).arrayBuffer());
    fs.writeFileSync(path.join(tmp, 'share.tgz'), tgz);
    expect(execFileSync('tar', ['-tzf', path.join(tmp, 'share.tgz')]).toString()).toMatch(/share\/report\.pdf/);
    const short = await api.post<{ url: string }>(files('/export'), { path: '/workspace/share/report.pdf', expires_in: 1 });
    await new Promise((r) => setTimeout(r, 2500));
    const late = await rawFetch(short.body.url, 'GET');
    expectEnvelope(late, 401, 'UNAUTHORIZED');
    expect(late.text).toMatch(/expired/);
    expectEnvelope(await rawFetch(`${ex.body.url}x`, 'GET'), 401, 'UNAUTHORIZED');
  });

  it('errors in the envelope: a missing path 404, a directory 409, a stopped computer 409 COMPUTER_NOT_RUNNING, a JSON write over 10 MiB 413', async () => {
    expectEnvelope(await api.raw('GET', files('/download?path=/workspace/nope')), 404, 'NOT_FOUND');
    expectEnvelope(await api.raw('GET', files('/download?path=/workspace')), 409, 'CONFLICT');
    const big = JSON.stringify({ path: '/workspace/too-big', content_base64: 'A'.repeat(11 * 1024 * 1024) });
    expectEnvelope(await api.raw('POST', files('/write'), { body: big, headers: { 'content-type': 'application/json' } }), 413, 'PAYLOAD_TOO_LARGE');
    expect((await api.exec(id, 'test -e /workspace/too-big && echo there || echo none')).body.output).toBe('none\n');
    expect((await api.post(`/computers/${id}/stop`)).status).toBe(200);
    expectEnvelope(await api.raw('GET', files('/download?path=/workspace/r.bin')), 409, 'COMPUTER_NOT_RUNNING');
    expectEnvelope(await api.raw('POST', files('/upload?path=/workspace/x'), { body: 'x' }), 409, 'COMPUTER_NOT_RUNNING');
    expect((await api.post(`/computers/${id}/start`)).status).toBe(200);
  });
});
