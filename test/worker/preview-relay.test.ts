/**
 * Exposed ports through their preview hosts, inside workerd: the real Worker
 * and ComputerObject; the agent peer plays the app on the relay stream.
 */
import { describe, expect, it } from 'vitest';
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { expectJson, tenantFetch } from './helpers.ts';
import { sleep, useAgentPeers } from './agent-peer.ts';
import { computerStub, getComputer, runningComputer, stoppedComputer, waitForStatus, world } from './computer-fixtures.ts';
import { expose, previewFetch, previewUrl, scriptedApp, type PreviewComputer } from './preview-fixtures.ts';
import { FLAG_MESSAGE_END, FLAG_TEXT } from '../../schema/relay.ts';
import { equalBytes, randomBytes } from './ws-client.ts';

useAgentPeers();

async function publicPort(port = 3000) {
  const w = await world();
  const { computer, peer } = await runningComputer(w);
  await expose(w, computer.id, port);
  return { w, peer, computer: computer as PreviewComputer };
}

describe('preview hosts', () => {
  it('a URL built from the computer object as {port}-{slug}.sandbox.{preview_domain} reaches the port', async () => {
    const { computer, peer } = await publicPort();
    expect(computer.slug).toMatch(/^dev-box-[0-9a-f]{8}$/);
    expect(computer.slug.endsWith(computer.id.slice(0, 8))).toBe(true);
    expect(computer.preview_domain).toBe('localhost');
    expect(computer.sandbox_url).toBe(`https://${computer.slug}.sandbox.localhost`);
    const seen = scriptedApp(peer, (req) => ({ status: 201, headers: [['content-type', 'text/plain'], ['x-app', 'yes']], body: `hello ${req.method} ${req.path}` }));
    const res = await previewFetch(computer, 3000, '/greet?name=a%20b');
    expect(res.status).toBe(201);
    expect(res.headers.get('x-app')).toBe('yes');
    expect(await res.text()).toBe('hello GET /greet?name=a%20b');
    expect(seen[0].stream.open.target).toEqual({ kind: 'computer_tcp', port: 3000 });
    expect(seen[0].header('host')).toBe(new URL(previewUrl(computer, 3000)).host);
  });

  it('the port record carries its url, and GET …/urls-style fields agree with the scheme', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const c = computer as PreviewComputer;
    const r = await expose(w, c.id, 8080);
    expect(r.data).toMatchObject({ port: 8080, visibility: 'public', url: previewUrl(c, 8080, ''), access_token: null, wake_on_request: false });
    const list = await expectJson<{ data: { url: string }[] }>(await w.api(`/${c.id}/ports`), 200);
    expect(list.data.map((p) => p.url)).toEqual([previewUrl(c, 8080, '')]);
  });

  it('passes every method and the request body, and X-Forwarded-For, -Proto and -Host', async () => {
    const { computer, peer } = await publicPort();
    const seen = scriptedApp(peer, (req) => ({ body: `${req.method} ${req.body().byteLength}` }));
    const body = randomBytes(300_000, 5);
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'PROPFIND']) {
      const res = await previewFetch(computer, 3000, '/up', { method, body, headers: { 'cf-connecting-ip': '203.0.113.7', 'x-forwarded-for': '198.51.100.1' } });
      expect(await res.text()).toBe(`${method} ${body.byteLength}`);
    }
    const last = seen.at(-1)!;
    expect(equalBytes(last.body(), body)).toBe(true);
    expect(last.header('x-forwarded-for')).toBe('198.51.100.1, 203.0.113.7');
    expect(last.header('x-forwarded-proto')).toBe('https');
    expect(last.header('x-forwarded-host')).toBe(new URL(previewUrl(computer, 3000)).host);
    expect(last.header('content-length')).toBe(String(body.byteLength));
    const head = await previewFetch(computer, 3000, '/h', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('a response streams to the client chunk by chunk, as the app writes it', async () => {
    const { computer, peer } = await publicPort();
    const seen = scriptedApp(peer, () => ({ headers: [['content-type', 'text/event-stream']], body: 'data: one\n\n', hold: true }));
    const res = await previewFetch(computer, 3000, '/events', { headers: { accept: 'text/event-stream' } });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('data: one\n\n');
    // The second event is written only now that the first has arrived.
    peer.relay.data(seen[0].stream, 'data: two\n\n');
    const second = await reader.read();
    expect(new TextDecoder().decode(second.value)).toBe('data: two\n\n');
    peer.relay.close(seen[0].stream);
    expect((await reader.read()).done).toBe(true);
  });

  it('keeps the app Content-Length and repeated Set-Cookie headers, and drops hop-by-hop ones', async () => {
    const { computer, peer } = await publicPort();
    const payload = randomBytes(70_000, 8);
    scriptedApp(peer, () => ({
      headers: [
        ['Content-Length', String(payload.byteLength)],
        ['Set-Cookie', 'a=1; Path=/'],
        ['Set-Cookie', 'b=2; Path=/'],
        ['Connection', 'keep-alive'],
        ['Keep-Alive', 'timeout=5'],
      ],
      body: payload,
    }));
    const res = await previewFetch(computer, 3000, '/file');
    expect(res.headers.get('content-length')).toBe(String(payload.byteLength));
    expect(res.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; Path=/']);
    expect(res.headers.get('keep-alive')).toBeNull();
    expect(equalBytes(new Uint8Array(await res.arrayBuffer()), payload)).toBe(true);
  });

  it('nothing listening is a 502 naming the port and computer: a page for browsers, the envelope for others', async () => {
    const { computer, peer } = await publicPort();
    peer.relay.onOpen = (s) => peer.relay.reset(s, 'refused', 'ECONNREFUSED');
    const page = await previewFetch(computer, 3000, '/', { headers: { accept: 'text/html,application/xhtml+xml' } });
    expect(page.status).toBe(502);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const html = await page.text();
    expect(html).toContain(`nothing is listening on port 3000 of computer ${computer.slug}`);
    const api = await previewFetch(computer, 3000, '/', { headers: { accept: 'application/json' } });
    expect(api.status).toBe(502);
    const body = await api.json<{ error: { code: string; message: string; request_id: string } }>();
    expect(body.error.code).toBe('PORT_NOT_LISTENING');
    expect(body.error.message).toContain(`port 3000 of computer ${computer.slug}`);
    expect(body.error.request_id).toMatch(/^req_/);
  });

  it('a stopped computer answers 503 saying so, and nothing is relayed', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    await expose(w, computer.id, 3000);
    const res = await previewFetch(computer as PreviewComputer, 3000, '/', { headers: { accept: 'application/json' } });
    expect(res.status).toBe(503);
    const body = await res.json<{ error: { code: string; message: string } }>();
    expect(body.error.code).toBe('COMPUTER_STOPPED');
    expect(body.error.message).toContain('the computer is stopped');
    expect(peer.relay.streams.size).toBe(0);
  });

  it('with wake_on_request, the first request starts a stopped computer and is answered once it runs', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    await expose(w, computer.id, 3000, 'public', { wake_on_request: true });
    scriptedApp(peer, () => ({ body: 'awake' }));
    const held = peer.hold('computer.start');
    const pending = previewFetch(computer as PreviewComputer, 3000, '/');
    await held.request;
    expect((await getComputer(w, computer.id)).status).toBe('starting');
    held.reply({ data: { state: 'running' } });
    const res = await pending;
    expect(await res.text()).toBe('awake');
    expect((await waitForStatus(w, computer.id, 'running')).status).toBe('running');
  });

  it('a body over the limit is a 413 in the envelope before anything reaches the app', async () => {
    const { computer, peer } = await publicPort();
    const seen = scriptedApp(peer);
    const res = await previewFetch(computer, 3000, '/up', { method: 'POST', body: new Uint8Array(1024 * 1024 + 1), headers: { accept: 'application/json' } });
    expect(res.status).toBe(413);
    expect((await res.json<{ error: { code: string } }>()).error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(seen).toEqual([]);
  });

  it('a chunked body that grows over the limit is cut off with a 413', async () => {
    const { computer, peer } = await publicPort();
    // This app answers only once it has the whole body, which never comes.
    peer.relay.onOpen = (s) => peer.relay.accept(s, 4 * 1024 * 1024);
    peer.relay.onActivity = (s) => s.received > s.credited && peer.relay.credit(s);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent > 2 * 1024 * 1024) return c.close();
        sent += 64 * 1024;
        c.enqueue(new Uint8Array(64 * 1024));
      },
    });
    const res = await previewFetch(computer, 3000, '/up', { method: 'POST', body, headers: { accept: 'application/json' }, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(413);
    const s = [...peer.relay.streams.values()][0];
    await peer.relay.until(() => s.reset, 'the reset of the upload');
    expect(s.received).toBeLessThanOrEqual(1024 * 1024);
  });

  it('relays a WebSocket: the app chooses the subprotocol, messages keep their kind, close codes pass both ways', async () => {
    const { computer, peer } = await publicPort();
    const seen = scriptedApp(peer, () => ({ status: 101, headers: [['Sec-WebSocket-Protocol', 'chat.v2'], ['Sec-WebSocket-Accept', 'x']], hold: true }));
    const res = await previewFetch(computer, 3000, '/ws', { headers: { upgrade: 'websocket', 'sec-websocket-protocol': 'chat.v1, chat.v2' } });
    expect(res.status).toBe(101);
    expect(res.headers.get('sec-websocket-protocol')).toBe('chat.v2');
    const ws = res.webSocket!;
    ws.accept();
    ws.binaryType = 'arraybuffer';
    const got: (string | Uint8Array)[] = [];
    ws.addEventListener('message', (e) => got.push(typeof e.data === 'string' ? e.data : new Uint8Array(e.data as ArrayBuffer)));
    const closed = new Promise<CloseEvent>((r) => ws.addEventListener('close', r));
    const s = seen[0].stream;
    expect(seen[0].header('sec-websocket-protocol')).toBe('chat.v1, chat.v2');
    ws.send('héllo');
    ws.send(new Uint8Array([1, 2, 3]));
    await peer.relay.until(() => s.frames.length >= 2, 'two messages at the app');
    expect(s.frames.map((f) => f.flags)).toEqual([FLAG_MESSAGE_END | FLAG_TEXT, FLAG_MESSAGE_END]);
    expect(new TextDecoder().decode(s.frames[0].payload)).toBe('héllo');
    peer.relay.data(s, 'from app', FLAG_MESSAGE_END | FLAG_TEXT);
    peer.relay.data(s, new Uint8Array([9, 8]), FLAG_MESSAGE_END);
    await peer.relay.until(() => got.length === 2, 'two messages at the client');
    expect(got[0]).toBe('from app');
    expect(got[1]).toEqual(new Uint8Array([9, 8]));
    peer.relay.close(s, { code: 4002, reason: 'app done' });
    const ev = await closed;
    expect([ev.code, ev.reason]).toEqual([4002, 'app done']);
  });

  it('removing the port ends its open connections, and the next request is a 404', async () => {
    const { w, computer, peer } = await publicPort();
    scriptedApp(peer, () => ({ body: 'first ', hold: true }));
    const res = await previewFetch(computer, 3000, '/slow');
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('first ');
    await expectJson(await w.api(`/${computer.id}/ports/3000`, { method: 'DELETE' }), 200);
    await expect(reader.read()).rejects.toThrow();
    expect(await runInDurableObject(computerStub(computer.id), (o) => o.relay.size)).toBe(0);
    expect((await previewFetch(computer, 3000, '/', { headers: { accept: 'application/json' } })).status).toBe(404);
  });

  it('traffic through a port counts as activity for auto-stop', async () => {
    const { w, computer, peer } = await publicPort();
    await expectJson(await w.api(`/${computer.id}/auto-stop`, { method: 'PATCH', body: { auto_stop_seconds: 2 } }), 200);
    const seen = scriptedApp(peer, () => ({ headers: [['content-type', 'text/event-stream']], body: 'data: 0\n\n', hold: true }));
    const reader = (await previewFetch(computer, 3000, '/events')).body!.getReader();
    await reader.read();
    // Events for 2.5 s, nothing else touching the computer.
    for (let i = 1; i <= 10; i++) {
      await sleep(250);
      peer.relay.data(seen[0].stream, `data: ${i}\n\n`);
      await reader.read();
    }
    await runDurableObjectAlarm(computerStub(computer.id));
    expect((await getComputer(w, computer.id)).status).toBe('running');
    expect(peer.requests.some((r) => r.type === 'computer.stop')).toBe(false);
  });

  it('an unknown preview name and a port not exposed are 404; /__hangar/ paths are never the app', async () => {
    const { computer, peer } = await publicPort();
    const seen = scriptedApp(peer);
    const json = { headers: { accept: 'application/json' } };
    expect((await previewFetch({ ...computer, slug: 'nobody-00000000' }, 3000, '/', json)).status).toBe(404);
    const notExposed = await previewFetch(computer, 3001, '/', json);
    expect(notExposed.status).toBe(404);
    expect((await notExposed.json<{ error: { message: string } }>()).error.message).toContain('port 3001');
    expect((await previewFetch(computer, 3000, '/__hangar/anything', json)).status).toBe(404);
    expect(seen).toEqual([]);
  });
});

void tenantFetch;
