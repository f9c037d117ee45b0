/**
 * Relayed streams end to end in Node: the object's RelayMux and the agent's
 * AgentRelay over a real WebSocket, to real TCP, HTTP and WebSocket servers on
 * loopback (host_tcp targets). Bytes, flow control per stream, FIN and RST,
 * refusals, a dropped link, an HTTP exchange and a relayed WebSocket.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { hostTcpOpener } from '../../host-agent/relay/openers.ts';
import { readableOf, pumpInto } from '../../durable-objects/relay/readable.ts';
import type { RelayStream } from '../../durable-objects/relay/relay-stream.ts';
import { DEFAULT_WINDOW, type OpenOptions } from '../../durable-objects/relay/relay-mux.ts';
import { FLAG_MESSAGE_END, FLAG_TEXT } from '../../schema/relay.ts';
import { relayPair, type RelayPair } from './relay-pair.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function pair(): Promise<RelayPair> {
  const p = await relayPair({ host_tcp: hostTcpOpener });
  cleanups.push(() => p.close());
  return p;
}

async function tcpServer(onSocket: (s: net.Socket) => void): Promise<{ port: number; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onSocket(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => srv.close(r));
  });
  return { port: (srv.address() as net.AddressInfo).port, sockets };
}

/** An echo server that ends its side once the client has ended its own. */
const echo = () => tcpServer((s) => s.pipe(s));

function open(p: RelayPair, port: number, http?: OpenOptions['http']): RelayStream {
  const r = p.mux.open({ kind: 'host_tcp', port }, http ? { http } : {});
  if (!r.ok) throw new Error(r.message);
  return r.value;
}

async function readAll(stream: RelayStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of readableOf(stream)) chunks.push(c);
  return Buffer.concat(chunks);
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A body of `total` random bytes in pieces of `piece`. */
function bodyOf(bytes: Buffer, piece = 100_000): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.subarray(at, at + piece));
      at += piece;
    },
  });
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Sends a line through an echo stream and waits for it back: the stream is alive. */
async function roundTrip(stream: RelayStream, text: string): Promise<string> {
  let got = '';
  stream.attach({
    data: (p) => {
      got += Buffer.from(p).toString();
      stream.consumed(p.byteLength);
    },
    end: () => {},
  });
  await stream.write(Buffer.from(text));
  await until(() => got.length >= text.length, 'the echo');
  return got;
}

describe('relayed byte streams', () => {
  it('carries bytes both ways unchanged, and a FIN each way ends the stream cleanly', async () => {
    const p = await pair();
    const { port } = await echo();
    const s = open(p, port);
    expect(await s.accepted).toBeNull();
    const data = randomBytes(8 * 1024 * 1024 + 123);
    const [sent, back] = await Promise.all([pumpInto(bodyOf(data), s), readAll(s)]);
    expect(sent).toEqual({ kind: 'done', bytes: data.length });
    expect(back.length).toBe(data.length);
    expect(sha(back)).toBe(sha(data));
    expect(await s.done).toBeNull();
    await until(() => p.agent.size === 0 && p.mux.size === 0, 'both ends to forget the stream');
  });

  it('half-close: the target still answers after the client has sent its FIN', async () => {
    const p = await pair();
    const { port } = await tcpServer((sock) => {
      let n = 0;
      sock.on('data', (d) => (n += d.length));
      // Answers only once the client has finished sending, then closes its side.
      sock.on('end', () => sock.end(`got ${n} bytes`));
    });
    const s = open(p, port);
    const reply = readAll(s);
    await s.write(Buffer.alloc(5000, 1));
    s.closeWrite();
    expect((await reply).toString()).toBe('got 5000 bytes');
    expect(await s.done).toBeNull();
  });

  it('a client that stops reading holds back only its own stream, and gets every byte when it reads again', async () => {
    const p = await pair();
    const total = 48 * 1024 * 1024;
    const data = randomBytes(total);
    let flushed = 0;
    const firehose = await tcpServer((sock) => {
      let at = 0;
      const more = () => {
        while (at < total) {
          const piece = data.subarray(at, at + 256 * 1024);
          at += piece.length;
          const ok = sock.write(piece, () => (flushed += piece.length));
          if (!ok) return void sock.once('drain', more);
        }
        sock.end();
      };
      more();
    });
    const { port: echoPort } = await echo();
    const slow = open(p, firehose.port);
    const held: Uint8Array[] = [];
    let delivered = 0;
    slow.attach({ data: (b) => (held.push(b), (delivered += b.byteLength)), end: () => {} });
    await until(() => delivered >= DEFAULT_WINDOW, 'a window of bytes');
    const before = p.serverBytesIn();
    // The other stream on the same link is not held up by the one nobody reads.
    const other = open(p, echoPort);
    expect(await roundTrip(other, 'still here')).toBe('still here');
    await new Promise((r) => setTimeout(r, 300));
    // Not a byte beyond the window reached the object, and the app could not write it all.
    expect(delivered).toBe(DEFAULT_WINDOW);
    expect(p.serverBytesIn() - before).toBeLessThan(64 * 1024);
    expect(flushed).toBeLessThan(total);
    // Reading again: everything arrives, in order.
    for (const b of held.splice(0)) slow.consumed(b.byteLength);
    const chunks: Uint8Array[] = [];
    slow.attach({ data: (b) => (chunks.push(b), slow.consumed(b.byteLength)), end: () => {} });
    await until(() => chunks.reduce((n, c) => n + c.byteLength, 0) + DEFAULT_WINDOW >= total, 'the rest of the bytes', 60_000);
    // The app has closed its side; the stream is over once the client closes its own.
    slow.closeWrite();
    expect(await slow.done).toBeNull();
    const all = Buffer.concat([data.subarray(0, DEFAULT_WINDOW), ...chunks]);
    expect(sha(all)).toBe(sha(data));
  });

  it('a target that stops reading holds back only its own stream, and takes every byte when it reads again', async () => {
    const p = await pair();
    const received: Buffer[] = [];
    const gates: Array<() => void> = [];
    const { port } = await tcpServer((sock) => {
      sock.pause();
      gates.push(() => sock.resume());
      sock.on('data', (d) => received.push(d));
      sock.on('end', () => sock.end());
    });
    const { port: echoPort } = await echo();
    const s = open(p, port);
    await s.accepted;
    const data = randomBytes(32 * 1024 * 1024);
    let written = false;
    const writing = s.write(data).then((ok) => ((written = true), ok));
    await new Promise((r) => setTimeout(r, 500));
    expect(written).toBe(false);
    const other = open(p, echoPort);
    expect(await roundTrip(other, 'not blocked')).toBe('not blocked');
    await until(() => gates.length === 1, 'the target socket');
    gates[0]();
    expect(await writing).toBe(true);
    s.closeWrite();
    const readBack = readAll(s);
    await until(() => received.reduce((n, b) => n + b.length, 0) === data.length, 'all bytes at the target', 60_000);
    expect(sha(Buffer.concat(received))).toBe(sha(data));
    expect((await readBack).length).toBe(0);
    expect(await s.done).toBeNull();
  });

  it('a target that resets the connection resets the stream', async () => {
    const p = await pair();
    const { port } = await tcpServer((sock) => sock.once('data', () => sock.resetAndDestroy()));
    const s = open(p, port);
    const body = readAll(s).catch((e: Error) => e);
    await s.write(Buffer.from('hello'));
    const reset = await s.done;
    expect(reset).toMatchObject({ code: 'reset', remote: true });
    expect(await body).toBeInstanceOf(Error);
  });

  it('the client resetting the stream aborts the connection to the target', async () => {
    const p = await pair();
    let closedWithError: boolean | null = null;
    const { port } = await tcpServer((sock) => sock.on('close', (hadError) => (closedWithError = hadError)));
    const s = open(p, port);
    await s.accepted;
    s.reset('closed', 'the client went away');
    await until(() => closedWithError !== null, 'the target socket to close');
    expect(closedWithError).toBe(true);
    await until(() => p.agent.size === 0, 'the agent to forget the stream');
  });

  it('a port nobody listens on is refused, and a target kind the agent does not serve is unsupported', async () => {
    const p = await pair();
    const { port } = await echo();
    const closedPort = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const q = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(q));
      });
    });
    expect(await open(p, closedPort).accepted).toMatchObject({ code: 'refused', remote: true });
    const r = p.mux.open({ kind: 'computer_tcp', port });
    expect(r.ok && (await r.value.accepted)).toMatchObject({ code: 'unsupported', remote: true });
    expect(p.mux.size).toBe(0);
  });

  it('dropping the link resets every stream on both ends and closes the connections to the targets', async () => {
    const p = await pair();
    const { port, sockets } = await echo();
    const a = open(p, port);
    const b = open(p, port);
    await Promise.all([a.accepted, b.accepted]);
    await until(() => sockets.size === 2, 'two target connections');
    p.drop();
    expect(await a.done).toMatchObject({ code: 'unreachable' });
    expect(await b.done).toMatchObject({ code: 'unreachable' });
    await until(() => sockets.size === 0, 'the target connections to close');
    expect(p.mux.size).toBe(0);
    expect(p.agent.size).toBe(0);
  });
});

describe('an HTTP exchange on a stream', () => {
  it('streams the request body in, and the response head with repeated headers and its body chunk by chunk', async () => {
    const p = await pair();
    const gates: Array<() => void> = [];
    const srv = http.createServer((req, res) => {
      const h = createHash('sha256');
      let n = 0;
      req.on('data', (d: Buffer) => (h.update(d), (n += d.length)));
      req.on('end', () => {
        res.writeHead(200, [
          ['Content-Type', 'text/event-stream'],
          ['Set-Cookie', 'a=1'],
          ['Set-Cookie', 'b=2'],
          ['X-Seen', `${req.method} ${req.url} ${req.headers.host} ${n} ${h.digest('hex')}`],
        ]);
        res.write('data: first\n\n');
        // The second chunk is written only once the client has seen the first.
        gates.push(() => res.end('data: second\n\n'));
      });
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    cleanups.push(() => new Promise((r) => srv.close(r)));
    const body = randomBytes(3 * 1024 * 1024);
    const s = open(p, (srv.address() as net.AddressInfo).port, {
      method: 'POST',
      path: '/upload?x=1',
      headers: [
        ['Host', 'app.example'],
        ['Content-Length', String(body.length)],
      ],
      websocket: false,
    });
    const pumped = pumpInto(bodyOf(body), s);
    const head = await s.response;
    expect(head?.status).toBe(200);
    expect(head?.headers.filter(([k]) => k.toLowerCase() === 'set-cookie')).toEqual([
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
    ]);
    expect(head?.headers.find(([k]) => k === 'X-Seen')?.[1]).toBe(`POST /upload?x=1 app.example ${body.length} ${sha(body)}`);
    const reader = readableOf(s).getReader();
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toContain('data: first');
    expect(gates).toHaveLength(1);
    gates[0]();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += Buffer.from(r.value).toString();
    expect(rest).toContain('data: second');
    expect(await pumped).toEqual({ kind: 'done', bytes: body.length });
    expect(await s.done).toBeNull();
  });

  it('an app that closes without answering resets the stream', async () => {
    const p = await pair();
    const { port } = await tcpServer((sock) => sock.once('data', () => sock.destroy()));
    const s = open(p, port, { method: 'GET', path: '/', headers: [['Host', 'x']], websocket: false });
    s.closeWrite();
    expect(await s.response).toBeNull();
    expect(await s.done).toMatchObject({ code: 'reset', remote: true });
  });
});

describe('a WebSocket on a stream', () => {
  async function wsServer(opts: ConstructorParameters<typeof WebSocketServer>[0] = {}): Promise<{ port: number; closes: Array<[number, string]> }> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...opts });
    await once(wss, 'listening');
    const closes: Array<[number, string]> = [];
    wss.on('connection', (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('close', (code, reason) => closes.push([code, reason.toString()]));
    });
    cleanups.push(() => {
      for (const c of wss.clients) c.terminate();
      return new Promise((r) => wss.close(() => r(undefined)));
    });
    return { port: (wss.address() as net.AddressInfo).port, closes };
  }

  it('relays the upgrade with the chosen subprotocol, whole messages of both kinds, and close codes', async () => {
    const p = await pair();
    const { port, closes } = await wsServer({ handleProtocols: (protocols) => (protocols.has('second') ? 'second' : false) });
    const s = open(p, port, {
      method: 'GET',
      path: '/socket?room=1',
      headers: [
        ['Host', 'app.example'],
        ['Sec-WebSocket-Protocol', 'first, second'],
      ],
      websocket: true,
    });
    const head = await s.response;
    expect(head?.status).toBe(101);
    expect(head?.headers.find(([k]) => k.toLowerCase() === 'sec-websocket-protocol')?.[1]).toBe('second');
    const messages: Array<{ text: boolean; data: Buffer }> = [];
    let parts: Buffer[] = [];
    let closedWith: unknown = null;
    s.attach({
      data(b, flags) {
        parts.push(Buffer.from(b));
        s.consumed(b.byteLength);
        if (flags & FLAG_MESSAGE_END) {
          messages.push({ text: (flags & FLAG_TEXT) !== 0, data: Buffer.concat(parts) });
          parts = [];
        }
      },
      end: (ws) => (closedWith = ws),
    });
    const big = randomBytes(700 * 1024);
    await s.write(Buffer.from('héllo'), FLAG_MESSAGE_END | FLAG_TEXT);
    await s.write(big, FLAG_MESSAGE_END);
    await until(() => messages.length === 2, 'two echoed messages');
    expect(messages[0]).toEqual({ text: true, data: Buffer.from('héllo') });
    expect(messages[1].text).toBe(false);
    expect(sha(messages[1].data)).toBe(sha(big));
    s.closeWrite({ code: 4001, reason: 'bye' });
    expect(await s.done).toBeNull();
    expect(closedWith).toEqual({ code: 4001, reason: 'bye' });
    expect(closes).toEqual([[4001, 'bye']]);
  });

  it("an app that refuses the upgrade has its answer relayed", async () => {
    const p = await pair();
    const srv = http.createServer((_req, res) => {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end('no sockets for you');
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    cleanups.push(() => new Promise((r) => srv.close(r)));
    const s = open(p, (srv.address() as net.AddressInfo).port, { method: 'GET', path: '/', headers: [['Host', 'x']], websocket: true });
    const head = await s.response;
    expect(head?.status).toBe(403);
    expect((await readAll(s)).toString()).toBe('no sockets for you');
  });
});

// Keeps the import of WebSocket used for its type in wsServer's options.
void WebSocket;
