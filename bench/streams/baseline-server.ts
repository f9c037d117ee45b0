/**
 * The baselines' server, run as a child process so it does not share the
 * bench's event loop: a plain Node SSE fan-out (GET /events subscribes,
 * POST /emit sends its body as one `output` event to every subscriber) and a
 * `ws` echo server on /echo. Prints its port once listening.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

const subscribers = new Set<http.ServerResponse>();
let seq = 0;

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write('retry: 1000\n\n');
    subscribers.add(res);
    req.on('close', () => subscribers.delete(res));
    return;
  }
  if (req.method === 'POST' && req.url === '/emit') {
    let body = '';
    req.on('data', (d: Buffer) => (body += d));
    req.on('end', () => {
      const event = `id: ${++seq}\nevent: output\ndata: ${JSON.stringify({ line: `${body}\n`, stream: 'stdout' })}\n\n`;
      for (const s of subscribers) s.write(event);
      res.end();
    });
    return;
  }
  res.writeHead(404).end();
});

const echo = new WebSocketServer({ server, path: '/echo', perMessageDeflate: false });
echo.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));

server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: (server.address() as AddressInfo).port })));
