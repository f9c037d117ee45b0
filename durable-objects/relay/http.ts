/**
 * One HTTP request relayed to a port, as the object does it: open an HTTP
 * stream (the agent speaks HTTP/1.1 to the app, docs/relay.md), send the body
 * under the agent's credit while it arrives, wait for the app's response head,
 * and answer with a Response whose body is the stream — read chunk by chunk,
 * credited as the client takes it, so an SSE event or a chunk reaches the
 * client as the app writes it and a slow client holds back only this app
 * connection. A WebSocket upgrade becomes a relayed WebSocket (whole messages,
 * close codes) once the app said 101.
 */
import { ApiError } from '../../schema/errors.ts';
import type { HeaderList, RelayTarget } from '../../schema/relay.ts';
import type { RelayMux } from './relay-mux.ts';
import type { StreamTags } from './relay-stream.ts';
import { pumpInto, readableOf } from './readable.ts';
import { relayFailure } from './failures.ts';
import { bridgeWebSocket } from './websocket.ts';

export interface HttpRelayOptions {
  target: RelayTarget;
  /** Path and query for the app. */
  path: string;
  websocket: boolean;
  tags: StreamTags;
  /** Request bodies past this many bytes are cut off with a 413. */
  maxBody: number;
  /** Names the target in errors: "port 3000 of computer my-app-1a2b3c4d". */
  where: string;
  /** Request headers (lower-case) the app must not get: a credential that was Hangar's on this route. */
  dropHeaders?: string[];
  /** Adjusts the app's response head before it goes to the client (a tunnel's prefix, tunnel-prefix.ts). */
  rewriteHead?: (headers: Headers) => void;
}

/** Never passed on to the client: they describe the hop to the app. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
/** Statuses whose responses have no body. */
const NO_BODY = new Set([101, 204, 205, 304]);

/** The request's headers for the app, minus the object's own and `drop`. */
function headersForApp(request: Request, drop: string[] = []): HeaderList {
  const out: HeaderList = [];
  for (const [name, value] of request.headers) if (!name.startsWith('x-hangar-') && !drop.includes(name)) out.push([name, value]);
  return out;
}

/** Relays the request; throws ApiError when no response from the app can be had. */
export async function relayHttp(mux: RelayMux, request: Request, o: HttpRelayOptions): Promise<Response> {
  const opened = mux.open(o.target, { tags: o.tags, http: { method: request.method, path: o.path, headers: headersForApp(request, o.dropHeaders), websocket: o.websocket } });
  if (!opened.ok) throw new ApiError(opened.code, opened.message);
  const stream = opened.value;
  const pumped = o.websocket ? null : pumpInto(request.body, stream, o.maxBody);
  // The app may answer before the body is sent (or never read it): the head is awaited beside the upload.
  const tooLarge = pumped?.then((p) => (p.kind === 'too_large' ? p : new Promise<never>(() => {})));
  const head = await Promise.race([stream.response, ...(tooLarge ? [tooLarge] : [])]);
  if (head && 'kind' in head) {
    stream.reset('closed', 'the request body was too large');
    throw new ApiError('PAYLOAD_TOO_LARGE', `the request body is over ${o.maxBody} bytes, the most that passes to a port`);
  }
  if (!head) throw relayFailure(stream.failure ?? { code: 'reset', message: 'the app closed the connection without answering', remote: true }, o.where);
  void pumped?.then((p) => {
    // Past the limit after the app answered: the upload is cut, the answer goes on.
    if (p.kind === 'too_large') stream.reset('closed', 'the request body was too large');
  });

  const headers = new Headers();
  for (const [name, value] of head.headers) {
    const n = name.toLowerCase();
    if (!HOP_BY_HOP.has(n) && !(head.status === 101 && n.startsWith('sec-websocket-') && n !== 'sec-websocket-protocol')) headers.append(name, value);
  }
  if (head.status !== 101) o.rewriteHead?.(headers);
  if (o.websocket && head.status === 101) {
    const pair = new WebSocketPair();
    bridgeWebSocket(pair[1], stream, 'messages');
    return new Response(null, { status: 101, webSocket: pair[0], headers });
  }
  if (request.method === 'HEAD' || NO_BODY.has(head.status) || head.status < 200) {
    drain(stream);
    return new Response(null, { status: head.status === 101 ? 502 : head.status, headers });
  }
  const body = readableOf(stream);
  const length = Number(headers.get('content-length') ?? NaN);
  if (Number.isSafeInteger(length) && length >= 0) {
    // Keeps Content-Length towards the client (a plain stream body would go out chunked).
    const fixed = new FixedLengthStream(length);
    void body.pipeTo(fixed.writable).catch(() => {});
    return new Response(fixed.readable, { status: head.status, headers });
  }
  return new Response(body, { status: head.status, headers });
}

/** Takes whatever the stream still carries, for answers that have no body. */
function drain(stream: { attach(s: { data(p: Uint8Array): void; end(): void }): void; consumed(n: number): void }): void {
  stream.attach({ data: (p) => stream.consumed(p.byteLength), end: () => {} });
}
