/**
 * One HTTP/1.1 exchange relayed to an app: the agent speaks HTTP to the
 * target over the stream's connection with Node's client (so the object never
 * parses HTTP), the request body arrives as the server's bytes, the response
 * head goes back as `relay.response` and its body as our bytes, chunk by
 * chunk as the app writes them, each direction under the stream's credit.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { HeaderList, RelayHttpRequest } from '../../schema/relay.ts';
import type { AgentStream } from './agent-stream.ts';
import { RelayTargetError } from './target-error.ts';
import { abort } from './tcp-bridge.ts';

/** Node's flat [name, value, name, value…] as pairs. */
export function headerPairs(raw: string[]): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i + 1 < raw.length && out.length < 512; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}

export function bridgeHttp(stream: AgentStream, socket: Duplex, req: RelayHttpRequest): void {
  let request: http.ClientRequest;
  try {
    request = http.request({
      createConnection: () => socket,
      method: req.method,
      path: req.path,
      headers: req.headers.flat(),
      setHost: false,
    });
  } catch (err) {
    // Node refuses what it cannot send (a header value with a line break): the app never sees it.
    stream.reset('error', `the request cannot be sent to the app: ${(err as Error).message}`);
    abort(socket);
    return;
  }
  let answered = false;
  let finished = false;
  stream.accept({
    data(payload, _flags, taken) {
      // After the response, a body the app did not wait for is taken and dropped.
      if (finished || request.destroyed || request.writableEnded) return taken();
      request.write(payload, () => taken());
    },
    end() {
      if (!request.writableEnded) request.end();
    },
    reset() {
      request.destroy();
      abort(socket);
    },
  });
  request.on('response', (res) => {
    answered = true;
    stream.respond({ status: res.statusCode ?? 502, headers: headerPairs(res.rawHeaders) });
    res.on('data', (chunk: Buffer) => {
      if (!stream.write(chunk)) res.pause();
    });
    stream.onDrain = () => res.resume();
    res.on('end', () => {
      finished = true;
      stream.end();
    });
    res.on('close', () => {
      if (!res.complete) stream.reset('reset', 'the app closed the connection before its response was complete');
    });
  });
  request.on('error', (err) => {
    if (finished) return;
    const e = RelayTargetError.from(err);
    const message = answered ? 'the connection to the app failed during its response' : 'the app closed the connection without answering';
    stream.reset(e.code === 'error' ? 'reset' : e.code, `${message}: ${e.message}`);
  });
}
