/**
 * Exposed ports end to end: real apps inside a real computer (static files,
 * an upload sink, server-sent events, a WebSocket echo), reached through
 * their preview hosts on the real Worker, with every visibility and its
 * refusals, credential stripping, the 502 and 503 pages, 100 MB both ways
 * with equal sha256 and bounded memory, and raw TCP over a WebSocket.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { hangar, newTenant, type Client } from './client.ts';
import { ISOLATION } from './isolation-under-test.ts';
import { previewRequest, previewSocket, relayRss, traceMemory, type MemoryTrace } from './preview-client.ts';

let a: Client;
let b: Client;
let id: string;
let slug: string;
let previewDomain: string;
const MiB = 1024 * 1024;
const BIG = 100_000_000;
/** Where the download's reader stops for a while. */
const PAUSE_AT = 2 * 1024 * 1024;
/**
 * What a stopped reader may leave between it and the app: every hop's window
 * and socket buffers (about 50 MiB seen: the object's window, the agent's, the
 * guest's, and the kernel's buffers on four sockets), short of the 93 MiB left
 * that a relay without flow control takes in.
 */
const STALL_LIMIT = 72 * 1024 * 1024;
/** How much the relay's memory may rise meanwhile: its windows, copies of them, and garbage not yet collected. */
const STALL_MEMORY = 80 * 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const url = (port: number, p = '/') => `http://${port}-${slug}.sandbox.${previewDomain}${p}`;
const JSON_ACCEPT = { accept: 'application/json' };

/**
 * Memory that does not grow with the bytes moved: flat from the first half of
 * the transfer to the second (a relay that buffered would add ~50 MB there;
 * garbage a runtime has not yet collected makes up the slack allowed).
 * How far above its start a process rises is not asked: that is the garbage a
 * runtime keeps before it collects (an agent rose 130 MiB over a transfer and
 * stayed flat from half to half), which says nothing of buffering.
 */
function expectFlat(m: MemoryTrace, what: string): void {
  const figures = `base ${Math.round(m.base / MiB)} MiB, first half ${Math.round(m.firstHalf / MiB)} MiB, second half ${Math.round(m.secondHalf / MiB)} MiB`;
  expect(m.secondHalf - m.firstHalf, `${what}: growth in the second half (${figures})`).toBeLessThan(48 * MiB);
}

async function sh(command: string, timeout = 120): Promise<string> {
  const r = await a.exec(id, command, timeout);
  if (r.status !== 200 || r.body.exit_code !== 0) throw new Error(`${command}: ${JSON.stringify(r.body)}`);
  return r.body.output;
}

beforeAll(async () => {
  [a, b] = await Promise.all([newTenant('ports-a'), newTenant('ports-b')]);
  id = await a.runningComputer('Port Box');
  const c = (await a.get<{ slug: string; preview_domain: string; sandbox_url: string }>(`/computers/${id}`)).body;
  slug = c.slug;
  previewDomain = c.preview_domain;
  const apps = readFileSync(path.join(import.meta.dirname, 'apps', 'preview_apps.py'), 'utf8');
  await sh(`cat > /tmp/apps.py <<'PYEOF'\n${apps}\nPYEOF\nnohup python3 /tmp/apps.py >/tmp/apps.log 2>&1 &\nfor i in $(seq 100); do test -e /tmp/apps.ready && exit 0; sleep 0.1; done; cat /tmp/apps.log; exit 1`);
  for (const port of [8000, 8001, 8002, 8003]) expect((await a.post(`/computers/${id}/ports`, { port, visibility: 'public' })).status).toBe(201);
}, 300_000);

afterAll(async () => {
  if (id) await a.del(`/computers/${id}`);
});

describe('exposed ports of a real computer', () => {
  it('the computer object gives what a client needs to build the preview URL, and the record its url', async () => {
    const c = (await a.get<{ slug: string; preview_domain: string; sandbox_url: string }>(`/computers/${id}`)).body;
    expect(c.preview_domain).toBe(`localhost:${new URL(hangar().origin).port}`);
    expect(c.sandbox_url).toBe(`http://${slug}.sandbox.${previewDomain}`);
    const ports = (await a.get<{ data: { port: number; url: string }[] }>(`/computers/${id}/ports`)).body.data;
    expect(ports.find((p) => p.port === 8001)?.url).toBe(url(8001, ''));
    const r = await previewRequest(url(8001, '/headers?x=1'));
    expect(r.status).toBe(200);
    expect((await r.json<{ path: string }>()).path).toBe('/headers?x=1');
  });

  // 100 MB each way through an app in a VM under software emulation takes minutes and its memory
  // figures follow the emulator's pace; the relay's byte path is the same for both drivers, so the sandbox run covers these.
  const bulk = it.skipIf(ISOLATION === 'vm');

  bulk('serves a 100 MB file with its sha256 intact, and a reader that stops holds the app back instead of filling the relay', async () => {
    const expected = (await sh(`mkdir -p /tmp/www && head -c ${BIG} /dev/urandom > /tmp/www/big.bin && sha256sum /tmp/www/big.bin`)).split(' ')[0];
    const h = hangar();
    // What the app has handed to its sockets so far (the apps count it; 8001 tells).
    const served = async () => (await (await previewRequest(url(8001, '/served'))).json<{ bytes: number }>()).bytes;
    const servedBefore = await served();
    let n = 0;
    let stalled: { memory: number; inFlight: number } | undefined;
    const r = await previewRequest(url(8000, '/big.bin'));
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(BIG));
    const hash = createHash('sha256');
    for await (const chunk of r.stream) {
      hash.update(chunk as Buffer);
      n += (chunk as Buffer).length;
      if (!stalled && n >= PAUSE_AT) {
        // The reader stops taking bytes while the app could send the other 98 MB at once. A relay with flow
        // control fills its windows (a few MiB each hop) and the app's writes block; one that buffered would
        // take in the rest of the file. Both are seen: the bytes the app got out beyond what the reader took,
        // and the relay's memory (the dev server and the agent's own process, not the computer's programs).
        const before = relayRss(h);
        // Until the app is held (what it got out stops growing) or it is plainly not (past the limit).
        const deadline = Date.now() + 30_000;
        let inFlight = -1;
        for (let last = -2; inFlight !== last && inFlight <= STALL_LIMIT && Date.now() < deadline; ) {
          last = inFlight;
          await sleep(1000);
          inFlight = (await served()) - servedBefore - n;
        }
        const after = relayRss(h);
        stalled = { memory: after.worker - before.worker + (after.agent - before.agent), inFlight };
      }
    }
    expect(n).toBe(BIG);
    expect(hash.digest('hex')).toBe(expected);
    expect(stalled!.inFlight, `the app got ${Math.round(stalled!.inFlight / MiB)} MiB out past a reader that had stopped`).toBeLessThanOrEqual(STALL_LIMIT);
    expect(stalled!.memory, `the relay grew ${Math.round(stalled!.memory / MiB)} MiB while the reader was stopped`).toBeLessThan(STALL_MEMORY);
  }, 180_000);

  bulk('takes a 100 MB upload, streamed, with its sha256 intact, without the relay holding it in memory', async () => {
    const h = hangar();
    const hash = createHash('sha256');
    let sent = 0;
    const block = randomBytes(MiB);
    const body = new Readable({
      read() {
        if (sent >= BIG) return void this.push(null);
        const piece = block.subarray(0, Math.min(MiB, BIG - sent));
        // Each block differs from the last, so a dropped or repeated one changes the digest.
        piece.writeUInt32BE(sent / MiB, 0);
        hash.update(piece);
        sent += piece.length;
        this.push(Buffer.from(piece));
      },
    });
    const worker = traceMemory(() => relayRss(h).worker, () => sent / BIG);
    const agent = traceMemory(() => relayRss(h).agent, () => sent / BIG);
    const r = await previewRequest(url(8001, '/upload'), { method: 'POST', body, headers: { 'content-length': String(BIG), 'content-type': 'application/octet-stream' } });
    const got = await r.json<{ bytes: number; sha256: string }>();
    expect(r.status).toBe(200);
    expect(got.bytes).toBe(BIG);
    expect(got.sha256).toBe(hash.digest('hex'));
    expectFlat(worker.stop(), 'the dev server (Worker and objects)');
    expectFlat(agent.stop(), 'the host agent');
  }, 180_000);

  it('passes a chunked upload through, and a body over the limit is a 413', async () => {
    const r = await previewRequest(url(8001, '/chunks'), { method: 'PUT', body: Readable.from([Buffer.from('abc'), Buffer.from('def')]) });
    expect(await r.json()).toMatchObject({ method: 'PUT', bytes: 6, sha256: createHash('sha256').update('abcdef').digest('hex') });
    // The limit is 100 MiB (RELAY_MAX_BODY_BYTES); the dev server answers once it has the body.
    const over = 100 * MiB + 1;
    const zeros = Buffer.alloc(MiB);
    let left = over;
    const body = new Readable({
      read() {
        if (left <= 0) return void this.push(null);
        const n = Math.min(left, MiB);
        left -= n;
        this.push(zeros.subarray(0, n));
      },
    });
    const big = await previewRequest(url(8001, '/too-big'), { method: 'POST', headers: { 'content-length': String(over), ...JSON_ACCEPT }, body });
    expect(big.status).toBe(413);
    expect((await big.json<{ error: { code: string } }>()).error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('delivers server-sent events as the app writes them', async () => {
    await sh('rm -f /tmp/sse-go');
    const r = await previewRequest(url(8002, '/events'), { headers: { accept: 'text/event-stream' } });
    expect(r.headers['content-type']).toBe('text/event-stream');
    const chunks = r.stream[Symbol.asyncIterator]();
    let text = new TextDecoder().decode((await chunks.next()).value as Buffer);
    expect(text).toBe('id: 1\ndata: first\n\n');
    // The app writes the second event only now, after the first has reached us.
    await sh('touch /tmp/sse-go');
    while (!text.includes('second')) text += new TextDecoder().decode((await chunks.next()).value as Buffer);
    expect(text).toBe('id: 1\ndata: first\n\nid: 2\ndata: second\n\n');
  });

  it('relays a WebSocket echo, text and binary, with the subprotocol the app chose', async () => {
    const ws = previewSocket(url(8003, '/ws'), ['one', 'two']);
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    expect(ws.protocol).toBe('two');
    const got: { text: boolean; data: Buffer }[] = [];
    ws.on('message', (data, isBinary) => got.push({ text: !isBinary, data: data as Buffer }));
    const bin = randomBytes(200_000);
    ws.send('héllo');
    ws.send(bin);
    const deadline = Date.now() + 30_000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(got[0]).toEqual({ text: true, data: Buffer.from('héllo') });
    expect(got[1].text).toBe(false);
    expect(got[1].data.equals(bin)).toBe(true);
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.close(4005, 'bye');
    expect(await closed).toBe(4005);
  });

  it("takes Hangar's credentials off the request and adds X-Forwarded-*", async () => {
    const r = await previewRequest(url(8001, '/headers'), {
      headers: { authorization: `Bearer ${a.key}`, cookie: 'app=1; __hangar_token=x', 'x-hangar-port-token': 'y', 'x-forwarded-for': '198.51.100.9' },
    });
    const seen = new Map((await r.json<{ headers: [string, string][] }>()).headers.map(([k, v]) => [k.toLowerCase(), v]));
    expect(seen.has('authorization')).toBe(false);
    expect(seen.get('cookie')).toBe('app=1');
    expect(seen.has('x-hangar-port-token')).toBe(false);
    expect(seen.get('x-forwarded-for')).toMatch(/^198\.51\.100\.9, /);
    expect(seen.get('x-forwarded-proto')).toBe('http');
    expect(seen.get('x-forwarded-host')).toBe(new URL(url(8001)).host);
    expect(seen.get('host')).toBe(new URL(url(8001)).host);
  });

  it('private: refused without a credential and with another tenant’s key; the tenant’s key and a minted link open it', async () => {
    expect((await a.patch(`/computers/${id}/ports/8001`, { visibility: 'private' })).status).toBe(200);
    try {
      expect((await previewRequest(url(8001, '/headers'), { headers: JSON_ACCEPT })).status).toBe(401);
      expect((await previewRequest(url(8001, '/headers'), { headers: { authorization: `Bearer ${b.key}`, ...JSON_ACCEPT } })).status).toBe(404);
      expect((await previewRequest(url(8001, '/headers'), { headers: { authorization: `Bearer ${a.key}` } })).status).toBe(200);
      const link = (await a.post<{ data: { url: string } }>(`/computers/${id}/ports/8001/link`, { path: '/headers?via=link' })).body.data.url;
      const hop = await previewRequest(link);
      expect(hop.status).toBe(302);
      expect(hop.headers.location).toBe('/headers?via=link');
      const cookie = (hop.headers['set-cookie'] ?? [])[0].split(';')[0];
      const r = await previewRequest(url(8001, '/headers?via=link'), { headers: { cookie } });
      expect(r.status).toBe(200);
      expect(JSON.stringify(await r.json())).not.toContain('__hangar');
      expect((await previewRequest(link, { headers: JSON_ACCEPT })).status).toBe(401);
    } finally {
      await a.patch(`/computers/${id}/ports/8001`, { visibility: 'public' });
    }
  });

  it('protected: refused without the token or with a wrong one; ?token= once, then a cookie; the header', async () => {
    const p = await a.patch<{ data: { access_token: string } }>(`/computers/${id}/ports/8001`, { visibility: 'protected' });
    const token = p.body.data.access_token;
    try {
      expect((await previewRequest(url(8001, '/headers'), { headers: JSON_ACCEPT })).status).toBe(401);
      expect((await previewRequest(url(8001, '/headers?token=pt_nope'), { headers: JSON_ACCEPT })).status).toBe(401);
      const hop = await previewRequest(url(8001, `/headers?token=${token}`));
      expect(hop.status).toBe(302);
      expect(hop.headers.location).toBe('/headers');
      const cookie = (hop.headers['set-cookie'] ?? [])[0].split(';')[0];
      const viaCookie = await previewRequest(url(8001, '/headers'), { headers: { cookie } });
      expect(viaCookie.status).toBe(200);
      expect(JSON.stringify(await viaCookie.json())).not.toContain(token);
      expect((await previewRequest(url(8001, '/headers'), { headers: { 'x-hangar-port-token': token } })).status).toBe(200);
    } finally {
      await a.patch(`/computers/${id}/ports/8001`, { visibility: 'public' });
    }
  });

  it('nothing listening is a 502 naming the port and the computer, as a page or the envelope', async () => {
    expect((await a.post(`/computers/${id}/ports`, { port: 8999, visibility: 'public' })).status).toBe(201);
    const page = await previewRequest(url(8999), { headers: { accept: 'text/html' } });
    expect(page.status).toBe(502);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(await page.text()).toContain(`nothing is listening on port 8999 of computer ${slug}`);
    const api = await previewRequest(url(8999), { headers: JSON_ACCEPT });
    expect((await api.json<{ error: { code: string } }>()).error.code).toBe('PORT_NOT_LISTENING');
  });

  it('raw TCP to a port over a WebSocket, for the tenant', async () => {
    const origin = hangar().origin.replace('http', 'ws');
    const ws = new WebSocket(`${origin}/api/v1/computers/${id}/tcp/8001`, { headers: { authorization: `Bearer ${a.key}` }, perMessageDeflate: false });
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    let text = '';
    ws.on('message', (d: Buffer) => (text += d.toString()));
    ws.send(Buffer.from(`GET /headers HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n`));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    expect(await closed).toBe(1000);
    expect(text).toMatch(/^HTTP\/1\.[01] 200/);
    expect(text).toContain('"raw.test"');
  });

  it('a stopped computer answers 503 saying so; with wake_on_request a request starts it and is answered', async () => {
    expect((await a.post(`/computers/${id}/stop`)).body.status).toBe('stopped');
    const r = await previewRequest(url(8001, '/headers'), { headers: JSON_ACCEPT });
    expect(r.status).toBe(503);
    expect((await r.json<{ error: { code: string; message: string } }>()).error.message).toContain('stopped');
    expect((await a.patch(`/computers/${id}/ports/8001`, { wake_on_request: true })).status).toBe(200);
    // The request starts the computer and is held until it runs; its apps do not come back by
    // themselves, so what answers is the running computer's empty port: a 502, not the 503.
    const woken = await previewRequest(url(8001, '/headers'), { headers: JSON_ACCEPT });
    expect(woken.status).toBe(502);
    expect((await woken.json<{ error: { code: string } }>()).error.code).toBe('PORT_NOT_LISTENING');
    expect((await a.get(`/computers/${id}`)).body.status).toBe('running');
    await sh(`nohup python3 /tmp/apps.py >/tmp/apps.log 2>&1 &\nfor i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8001) 2>/dev/null && exit 0; sleep 0.1; done; exit 1`);
    expect((await previewRequest(url(8001, '/headers'))).status).toBe(200);
  }, 180_000);
});
