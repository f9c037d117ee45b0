/**
 * The agent's link to the API comes back by itself: after a drop it redials
 * with full-jitter exponential backoff, until the server takes it again; a
 * refused key (401 on the upgrade) is final. Against a real WebSocket server
 * on an ephemeral port.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { ReconnectingSocket, redialDelay } from '../../host-agent/reconnecting-socket.ts';

describe('redial delays', () => {
  it('are the minimum plus a random part of a window that doubles per attempt up to the cap', () => {
    const windows = [0, 1, 2, 3, 4, 5, 10, 16].map((n) => redialDelay(n, 50, 1_500, () => 1) - 50);
    expect(windows).toEqual([50, 100, 200, 400, 800, 1_500, 1_500, 1_500]);
    for (const n of [0, 3, 16]) expect(redialDelay(n, 50, 1_500, () => 0)).toBe(50);
    // Full jitter: anywhere in the window, so a fleet of agents redialing at once spreads out.
    expect(redialDelay(4, 50, 1_500, () => 0.25)).toBe(50 + 200);
    const spread = new Set(Array.from({ length: 50 }, () => Math.round(redialDelay(5, 50, 1_500))));
    expect(spread.size).toBeGreaterThan(10);
    for (const d of spread) expect(d >= 50 && d <= 1_550).toBe(true);
  });
});

describe('a reconnecting socket', () => {
  let server: Server | null = null;
  let socket: ReconnectingSocket | null = null;

  afterEach(async () => {
    socket?.stop();
    await new Promise((r) => server?.close(r) ?? r(undefined));
    server = null;
    socket = null;
  });

  /** A server that answers upgrades with `status` (101 = accept) and drops the first `drops` sockets it accepts. */
  async function serve(opts: { drops: number; status?: number }): Promise<{ url: string; accepted: () => number; headers: string[] }> {
    const wss = new WebSocketServer({ noServer: true });
    let accepted = 0;
    const headers: string[] = [];
    server = createServer();
    server.on('upgrade', (req, sock, head) => {
      headers.push(String(req.headers.authorization));
      if (opts.status && opts.status !== 101) {
        sock.end(`HTTP/1.1 ${opts.status} Refused\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      wss.handleUpgrade(req, sock, head, (ws) => {
        accepted += 1;
        if (accepted <= opts.drops) ws.terminate();
        else ws.send('welcome');
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/agent`, accepted: () => accepted, headers };
  }

  it('redials after every drop, with its headers, until a connection holds', async () => {
    const s = await serve({ drops: 3 });
    socket = new ReconnectingSocket({ url: s.url, headers: { authorization: 'Bearer hk_test' }, minDelayMs: 10, maxDelayMs: 100 });
    const closes: number[] = [];
    socket.on('close', (code) => closes.push(code));
    const welcome = new Promise<string>((r) => socket!.once('message', r));
    socket.start();
    expect(await welcome).toBe('welcome');
    expect(s.accepted()).toBe(4);
    expect(closes).toHaveLength(3);
    expect(s.headers).toEqual(Array(4).fill('Bearer hk_test'));
    expect(socket.isOpen).toBe(true);
  });

  it('a refused key (401 on the upgrade) is final: reported once, never dialed again', async () => {
    const s = await serve({ drops: 0, status: 401 });
    socket = new ReconnectingSocket({ url: s.url, headers: {}, minDelayMs: 10, maxDelayMs: 20 });
    const rejected = new Promise<number>((r) => socket!.once('rejected', r));
    socket.start();
    expect(await rejected).toBe(401);
    // Many redial windows later, still the one attempt.
    await new Promise((r) => setTimeout(r, 500));
    expect(s.headers).toHaveLength(1);
  });
});
