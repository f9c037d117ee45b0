/**
 * A relayed WebSocket: the agent opens a WebSocket to the app with the
 * client's path, headers and offered subprotocols (the `ws` client over the
 * stream's connection), passes the app's 101 back as `relay.response`, then
 * carries whole messages each way (text stays text) and close codes both
 * ways. An app that refuses the upgrade has its response relayed as is.
 */
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import { FLAG_MESSAGE_END, FLAG_TEXT, type RelayHttpRequest } from '../../schema/relay.ts';
import type { AgentStream } from './agent-stream.ts';
import { headerPairs } from './http-bridge.ts';
import { RelayTargetError } from './target-error.ts';
import { abort } from './tcp-bridge.ts';

/** Largest message either way (a Workers WebSocket message is at most 1 MiB). */
const MAX_MESSAGE_BYTES = 1024 * 1024;
/** Headers the WebSocket client writes itself. */
const OWN_HEADERS = new Set(['host', 'upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-protocol']);

/** Close codes an endpoint may send; anything else closes as 1000. */
const sendable = (code: number) => ((code >= 1000 && code <= 1014 && ![1004, 1005, 1006].includes(code)) || (code >= 3000 && code <= 4999) ? code : 1000);

export function bridgeWebSocket(stream: AgentStream, socket: Duplex, req: RelayHttpRequest): void {
  const headers: Record<string, string> = {};
  let host = 'localhost';
  let protocols: string[] = [];
  for (const [name, value] of req.headers) {
    const n = name.toLowerCase();
    if (n === 'host') host = value;
    else if (n === 'sec-websocket-protocol') protocols = protocols.concat(value.split(',').map((p) => p.trim()).filter(Boolean));
    else if (!OWN_HEADERS.has(n)) headers[n] = n in headers ? `${headers[n]}${n === 'cookie' ? '; ' : ', '}${value}` : value;
  }
  let ws: WebSocket;
  try {
    ws = new WebSocket(`ws://${host}${req.path}`, protocols, {
      createConnection: () => socket,
      headers,
      perMessageDeflate: false,
      maxPayload: MAX_MESSAGE_BYTES,
      handshakeTimeout: 30_000,
      followRedirects: false,
    });
  } catch (err) {
    stream.reset('error', `the WebSocket request cannot be made: ${(err as Error).message}`);
    abort(socket);
    return;
  }
  let refused = false;
  let parts: Buffer[] = [];
  let partsTaken: Array<() => void> = [];

  stream.accept({
    data(payload, flags, taken) {
      if (refused || ws.readyState !== WebSocket.OPEN) return taken();
      parts.push(payload);
      partsTaken.push(taken);
      if (!(flags & FLAG_MESSAGE_END)) return;
      const whole = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      const done = partsTaken;
      parts = [];
      partsTaken = [];
      ws.send(whole, { binary: !(flags & FLAG_TEXT) }, () => done.forEach((t) => t()));
    },
    end(close) {
      if (refused) return;
      if (ws.readyState === WebSocket.OPEN) ws.close(sendable(close?.code ?? 1000), close?.reason ?? '');
      else ws.terminate();
    },
    reset() {
      ws.terminate();
      abort(socket);
    },
  });

  ws.on('upgrade', (res) => stream.respond({ status: 101, headers: headerPairs(res.rawHeaders) }));
  ws.on('unexpected-response', (request, res) => {
    // The app answered with something else than a 101: that answer is what the client gets.
    refused = true;
    stream.respond({ status: res.statusCode ?? 502, headers: headerPairs(res.rawHeaders) });
    res.on('data', (chunk: Buffer) => {
      if (!stream.write(chunk)) res.pause();
    });
    stream.onDrain = () => res.resume();
    res.on('end', () => {
      stream.end();
      request.destroy();
    });
  });
  ws.on('message', (data, isBinary) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (!stream.write(buf, FLAG_MESSAGE_END | (isBinary ? 0 : FLAG_TEXT))) ws.pause();
  });
  stream.onDrain = () => ws.resume();
  ws.on('close', (code, reason) => {
    if (refused || stream.isOver) return;
    if (code === 1006) stream.reset('reset', "the app's WebSocket connection ended without a close frame");
    else stream.end({ code: code === 1005 ? 1000 : sendable(code), reason: reason.toString().slice(0, 123) });
  });
  ws.on('error', (err) => {
    if (refused) return;
    const e = RelayTargetError.from(err);
    stream.reset(e.code === 'error' ? 'reset' : e.code, `the app's WebSocket failed: ${e.message}`);
  });
}
