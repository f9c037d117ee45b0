/**
 * OpenComputers tunnels end to end: the real Worker, a tenant host whose
 * real host-mode agent (installed from the API, run as an unprivileged user)
 * dials in, and a real app on this machine's loopback — the host's — serving
 * files, an upload sink, a stream it writes piece by piece, redirects with
 * cookies and a WebSocket echo. Requests go through `/t/{slug}` on the API
 * host and through the tunnel's own host `{slug}.t.{domain}`.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { freePort } from '../../scripts/local-stack.ts';
import { hangar, newTenant, type Client } from './client.ts';
import { startHostAgent, type HostAgent } from './host-agent.ts';
import { previewRequest, previewSocket, type PreviewReply } from './preview-client.ts';

interface TunnelView {
  id: string;
  slug: string;
  target_port: number;
  auth_mode: string;
  public_url: string;
  host_url: string;
  enabled: boolean;
}

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const BIG = 100_000_000;
/** What a stopped reader may leave between it and the app: every hop's window and socket buffers, short of the file. */
const STALL_LIMIT = 72 * MiB;
const sha256 = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

let a: Client;
let b: Client;
let agent: HostAgent;
let base: string;
let app: App;
let pub: TunnelView;

/** What the app on the host saw of each request. */
interface Seen {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
}

/** The app on the host's loopback. `/events` writes its second event only once the test calls `release()`. */
interface App {
  port: number;
  seen: Seen[];
  big: Buffer;
  /** Bytes of big.bin the app has handed to its sockets, over all requests. */
  bigWritten(): number;
  release(): void;
  close(): Promise<void>;
}

async function startApp(): Promise<App> {
  const big = randomBytes(BIG);
  let bigWritten = 0;
  const seen: Seen[] = [];
  const waiting: (() => void)[] = [];
  let released = 0;
  const gate = () => new Promise<void>((resolve) => (released > 0 ? (released--, resolve()) : waiting.push(resolve)));
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    seen.push({ method: req.method ?? '', path, headers: req.headers });
    const route = path.split('?')[0];
    if (route === '/headers') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, path, headers: req.headers }));
    } else if (route === '/big.bin') {
      // Written in pieces, chunked: the relay must pass it as it comes.
      res.setHeader('content-type', 'application/octet-stream');
      let off = 0;
      const more = () => {
        while (off < big.length) {
          const piece = big.subarray(off, off + 256 * 1024);
          off += piece.length;
          bigWritten += piece.length;
          if (!res.write(piece)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    } else if (route === '/sink') {
      const h = createHash('sha256');
      let n = 0;
      req.on('data', (d: Buffer) => {
        h.update(d);
        n += d.length;
      });
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ bytes: n, sha256: h.digest('hex') }));
      });
    } else if (route === '/go') {
      res.writeHead(302, { location: '/landing?from=go', 'set-cookie': ['sid=abc; Path=/; HttpOnly', 'pref=1; Path=/settings'] });
      res.end();
    } else if (route === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: first\n\n');
      void gate().then(() => res.end('data: second\n\n'));
    } else {
      res.setHeader('content-type', 'text/plain');
      res.end(`app saw ${req.method} ${path}`);
    }
  });
  // Upgrades do not pass the request handler; they are seen here too.
  server.on('upgrade', (req: http.IncomingMessage) => seen.push({ method: req.method ?? '', path: req.url ?? '/', headers: req.headers }));
  const wss = new WebSocketServer({ server, path: '/echo' });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  server.listen(await freePort(), '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    big,
    bigWritten: () => bigWritten,
    release: () => (waiting.length ? waiting.shift()!() : released++),
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The URL of `p` through tunnel `t`: under `/t/{slug}` on the API host, or on the tunnel's own host. */
const via = (t: TunnelView, form: 'path' | 'host', p: string) => (form === 'path' ? `${t.public_url}${p}` : `${t.host_url}${p}`);

async function body(r: PreviewReply): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const d of r.stream) parts.push(d as Buffer);
  return Buffer.concat(parts);
}

async function tunnel(client: Client, body: Record<string, unknown>): Promise<TunnelView> {
  const r = await client.post<TunnelView>(`${base}/tunnels`, body);
  if (r.status !== 201) throw new Error(`tunnel create: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

beforeAll(async () => {
  [a, b] = await Promise.all([newTenant('tunnels-a'), newTenant('tunnels-b')]);
  app = await startApp();
  agent = await startHostAgent(a, { name: 'tunnel-box' });
  base = `/opencomputers/hosts/${agent.hostId}`;
  pub = await tunnel(a, { target_port: app.port });
}, 180_000);

afterAll(async () => {
  await agent?.stop();
  await app?.close();
});

describe('a tunnel to an app on a real host-mode agent', () => {
  it('gives both of its URLs on the API host and on a host of its own', () => {
    const origin = new URL(hangar().origin);
    expect(pub.public_url).toBe(`${origin.origin}/t/${pub.slug}`);
    expect(pub.host_url).toBe(`http://${pub.slug}.t.localhost:${origin.port}`);
  });

  it('under /t/{slug} the app sees its own path, the prefix in X-Forwarded-Prefix, and none of Hangar’s credentials', async () => {
    const r = await previewRequest(via(pub, 'path', '/headers?x=1'), { headers: { authorization: `Bearer ${a.key}`, cookie: 'theirs=1' } });
    expect(r.status).toBe(200);
    const got = await r.json<{ path: string; headers: Record<string, string> }>();
    expect(got.path).toBe('/headers?x=1');
    expect(got.headers['x-forwarded-prefix']).toBe(`/t/${pub.slug}`);
    expect(got.headers['x-forwarded-proto']).toBe('http');
    expect(got.headers['x-forwarded-for']).toBeTruthy();
    expect(got.headers.authorization).toBeUndefined();
    expect(got.headers.cookie).toBe('theirs=1');
    expect(JSON.stringify(got)).not.toContain(a.key);
  });

  it('on its own host the app gets the path as it is, and an app’s own Authorization passes', async () => {
    const r = await previewRequest(via(pub, 'host', '/headers'), { headers: { authorization: 'Bearer the-apps-own-token' } });
    const got = await r.json<{ path: string; headers: Record<string, string> }>();
    expect(got.path).toBe('/headers');
    expect(got.headers['x-forwarded-prefix']).toBeUndefined();
    expect(got.headers.host).toBe(new URL(pub.host_url).host);
    expect(got.headers.authorization).toBe('Bearer the-apps-own-token');
  });

  it('redirects and cookie paths stay inside /t/{slug}; on its own host they pass unchanged', async () => {
    const r = await previewRequest(via(pub, 'path', '/go'));
    expect(r.status).toBe(302);
    expect(r.headers.location).toBe(`/t/${pub.slug}/landing?from=go`);
    expect(r.headers['set-cookie']).toEqual([`sid=abc; Path=/t/${pub.slug}/; HttpOnly`, `pref=1; Path=/t/${pub.slug}/settings`]);
    const own = await previewRequest(via(pub, 'host', '/go'));
    expect(own.headers.location).toBe('/landing?from=go');
    expect(own.headers['set-cookie']).toEqual(['sid=abc; Path=/; HttpOnly', 'pref=1; Path=/settings']);
    const bare = await previewRequest(via(pub, 'path', ''));
    expect(bare.status).toBe(308);
    expect(bare.headers.location).toBe(`/t/${pub.slug}/`);
  });

  it('a 100 MB download arrives with its sha256 intact, both ways of addressing the tunnel; a reader that stops holds the app back', async () => {
    for (const form of ['path', 'host'] as const) {
      const r = await previewRequest(via(pub, form, '/big.bin'));
      expect(r.status).toBe(200);
      const written0 = app.bigWritten();
      const hash = createHash('sha256');
      let n = 0;
      let inFlight: number | undefined;
      for await (const d of r.stream) {
        hash.update(d as Buffer);
        n += (d as Buffer).length;
        if (form === 'path' && inFlight === undefined && n >= 2 * MiB) {
          // The reader stops: with flow control on every hop the app's writes block once the windows are
          // full; without it the app would get the whole file out.
          const deadline = Date.now() + 30_000;
          let now = -1;
          for (let last = -2; now !== last && now <= STALL_LIMIT && Date.now() < deadline; ) {
            last = now;
            await sleep(1000);
            now = app.bigWritten() - written0 - n;
          }
          inFlight = now;
        }
      }
      expect(n, form).toBe(BIG);
      expect(hash.digest('hex'), form).toBe(sha256(app.big));
      if (form === 'path') expect(inFlight, `the app got ${Math.round(inFlight! / MiB)} MiB out past a reader that had stopped`).toBeLessThanOrEqual(STALL_LIMIT);
    }
  }, 180_000);

  it('a 100 MB upload reaches the app with its sha256 intact, with a length or chunked', async () => {
    const up = randomBytes(BIG);
    const sized = await previewRequest(via(pub, 'path', '/sink'), { method: 'PUT', body: up, headers: { 'content-length': String(up.length) } });
    expect(sized.status).toBe(200);
    expect(await sized.json()).toEqual({ bytes: BIG, sha256: sha256(up) });
    const { Readable } = await import('node:stream');
    const pieces = Array.from({ length: Math.ceil(BIG / MiB) }, (_, i) => up.subarray(i * MiB, (i + 1) * MiB));
    const chunked = await previewRequest(via(pub, 'host', '/sink'), { method: 'POST', body: Readable.from(pieces) });
    expect(chunked.status).toBe(200);
    expect(await chunked.json()).toEqual({ bytes: BIG, sha256: sha256(up) });
  }, 180_000);

  it('a streamed response reaches the client piece by piece: the first event arrives before the app writes the second', async () => {
    for (const form of ['path', 'host'] as const) {
      const r = await previewRequest(via(pub, form, '/events'));
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('text/event-stream');
      const chunks: string[] = [];
      const done = new Promise<void>((resolve, reject) => {
        r.stream.on('data', (d: Buffer) => {
          chunks.push(d.toString());
          // Only now, with the first event in hand, may the app write the second.
          if (chunks.join('') === 'data: first\n\n') app.release();
        });
        r.stream.on('end', resolve);
        r.stream.on('error', reject);
      });
      await done;
      expect(chunks.join(''), form).toBe('data: first\n\ndata: second\n\n');
    }
  }, 60_000);

  it('a WebSocket echoes text and binary messages unchanged, both ways of addressing the tunnel', async () => {
    for (const form of ['path', 'host'] as const) {
      const ws = previewSocket(via(pub, form, '/echo'));
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
        ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      });
      const replies: { data: Buffer; binary: boolean }[] = [];
      const all = new Promise<void>((resolve) =>
        ws.on('message', (data: Buffer, binary: boolean) => {
          replies.push({ data, binary });
          if (replies.length === 3) resolve();
        }),
      );
      const blob = randomBytes(300_000);
      ws.send('hello through the tunnel');
      ws.send(blob, { binary: true });
      ws.send('bye');
      await all;
      expect(replies.map((m) => m.binary)).toEqual([false, true, false]);
      expect(replies[0].data.toString()).toBe('hello through the tunnel');
      expect(sha256(replies[1].data), form).toBe(sha256(blob));
      expect(replies[2].data.toString()).toBe('bye');
      ws.close();
    }
    expect(app.seen.filter((s) => s.path === '/echo').length).toBe(2);
  }, 60_000);
});

describe('who may use a tunnel, and when it answers without the app', () => {
  it('tenant_only: 401 without a credential, 404 for another tenant’s key, open to the owner’s key, which the app never sees', async () => {
    const t = await tunnel(a, { target_port: app.port, auth_mode: 'tenant_only' });
    const before = app.seen.length;
    const json = { accept: 'application/json' };
    const none = await previewRequest(via(t, 'path', '/headers'), { headers: json });
    expect(none.status).toBe(401);
    expect((await none.json<{ error: { code: string } }>()).error.code).toBe('UNAUTHORIZED');
    const other = await previewRequest(via(t, 'host', '/headers'), { headers: { ...json, authorization: `Bearer ${b.key}` } });
    expect(other.status).toBe(404);
    expect(app.seen.length).toBe(before);
    const mine = await previewRequest(via(t, 'host', '/headers'), { headers: { authorization: `Bearer ${a.key}` } });
    expect(mine.status).toBe(200);
    expect((await mine.json<{ headers: Record<string, string> }>()).headers.authorization).toBeUndefined();
  });

  it('password: the header opens it (and is not passed on), a wrong one is a 401, a browser gets the login page', async () => {
    const t = await tunnel(a, { target_port: app.port, auth_mode: 'password', password: 'correct horse battery' });
    const wrong = await previewRequest(via(t, 'path', '/headers'), { headers: { 'x-hangar-tunnel-password': 'nope', accept: 'application/json' } });
    expect(wrong.status).toBe(401);
    const page = await previewRequest(via(t, 'path', '/headers'), { headers: { accept: 'text/html' } });
    expect(page.status).toBe(401);
    expect(await page.text()).toContain(`action="/t/${t.slug}/__hangar/login"`);
    const right = await previewRequest(via(t, 'path', '/headers'), { headers: { 'x-hangar-tunnel-password': 'correct horse battery' } });
    expect(right.status).toBe(200);
    expect((await right.json<{ headers: Record<string, string> }>()).headers['x-hangar-tunnel-password']).toBeUndefined();
  });

  it('a port with nothing listening on the host is a 502 saying so', async () => {
    const t = await tunnel(a, { target_port: await freePort() });
    const r = await previewRequest(via(t, 'path', '/'), { headers: { accept: 'application/json' } });
    expect(r.status).toBe(502);
    const e = await r.json<{ error: { code: string; message: string } }>();
    expect(e.error.code).toBe('PORT_NOT_LISTENING');
    expect(e.error.message).toContain(t.slug);
  });

  it('a disabled tunnel is a 404 that never reaches the app; enabling it serves again', async () => {
    const t = await tunnel(a, { target_port: app.port, enabled: false });
    const before = app.seen.length;
    const off = await previewRequest(via(t, 'path', '/x'), { headers: { accept: 'application/json' } });
    expect(off.status).toBe(404);
    expect(app.seen.length).toBe(before);
    expect((await a.patch(`${base}/tunnels/${t.id}`, { enabled: true })).status).toBe(200);
    const on = await previewRequest(via(t, 'path', '/x'));
    expect(on.status).toBe(200);
    expect(await on.text()).toBe('app saw GET /x');
  });

  it('with its agent stopped, the host is offline and its tunnels answer 503 saying so', async () => {
    await agent.stop();
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = (await a.get<{ status: string }>(base)).body.status;
      if (s === 'offline') break;
      if (Date.now() > deadline) throw new Error(`host still ${s} 60 s after its agent stopped`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const r = await previewRequest(via(pub, 'path', '/headers'), { headers: { accept: 'application/json' } });
    expect(r.status).toBe(503);
    const e = await r.json<{ error: { code: string; message: string } }>();
    expect(e.error.code).toBe('HOST_OFFLINE');
    expect(e.error.message).toContain('offline');
  }, 90_000);
});
