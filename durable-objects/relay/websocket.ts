/**
 * A client WebSocket joined to a relayed stream, in one of two shapes:
 *  - `messages`: the stream carries a WebSocket the agent opened to the app
 *    (http.websocket); each message crosses whole, text stays text, and close
 *    codes pass both ways;
 *  - `bytes`: the stream is raw TCP (a VNC server, any TCP service); binary
 *    messages from the client are its bytes, the target's bytes come back as
 *    binary messages (what websockify does).
 *
 * The client socket is accepted here, not hibernated: the stream it is joined
 * to lives in memory. Workers give no backpressure on a WebSocket, so bytes
 * for the client are credited as soon as they are sent (the runtime queues
 * them), and messages from a client that outruns the agent's credit queue up
 * to QUEUE_LIMIT bytes before the socket is closed with 1009.
 */
import { FLAG_MESSAGE_END, FLAG_TEXT } from '../../schema/relay.ts';
import type { StreamReset, StreamSink, WsClose } from './relay-stream.ts';

/**
 * What the bridge needs of a stream: a RelayStream, or anything that stands in
 * front of one (a protocol handshake run before splicing bytes through).
 */
export interface BridgeStream {
  readonly isOpen: boolean;
  readonly done: Promise<StreamReset | null>;
  attach(sink: StreamSink): void;
  consumed(n: number): void;
  write(bytes: Uint8Array, flags?: number): Promise<boolean>;
  closeWrite(ws?: WsClose): void;
  reset(code: 'closed' | 'protocol', message: string): void;
}
import { joinBytes } from '../bytes.ts';

/** Client bytes waiting for credit before the client is told it sends too fast. */
export const QUEUE_LIMIT = 8 * 1024 * 1024;
/** A Workers WebSocket message is at most 1 MiB. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
/** After a close each way was started, how long the other side has to answer before the stream is reset. */
const CLOSE_GRACE_MS = 5_000;

/** Close codes a server may send (1005, 1006 and 1015 are only ever reported, never sent). */
const sendable = (code: number) => (code === 1000 || (code >= 1001 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999) ? code : 1000);

export function bridgeWebSocket(client: WebSocket, stream: BridgeStream, mode: 'messages' | 'bytes'): void {
  client.accept();
  client.binaryType = 'arraybuffer';
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let queued = 0;
  let clientClosed = false;
  let parts: Uint8Array[] = [];
  let partBytes = 0;

  const closeClient = (code: number, reason: string) => {
    if (clientClosed) return;
    clientClosed = true;
    try {
      client.close(sendable(code), reason.slice(0, 120));
    } catch {
      /* already closing */
    }
  };

  stream.attach({
    data(payload, flags) {
      stream.consumed(payload.byteLength);
      if (clientClosed) return;
      if (mode === 'bytes') return safeSend(client, payload);
      parts.push(payload);
      partBytes += payload.byteLength;
      if (partBytes > MAX_MESSAGE_BYTES) {
        closeClient(1009, 'the app sent a message larger than a WebSocket message may be here');
        stream.reset('protocol', `a message over ${MAX_MESSAGE_BYTES} bytes`);
        return;
      }
      if (!(flags & FLAG_MESSAGE_END)) return;
      partBytes = 0;
      const whole = joinBytes(parts);
      parts = [];
      safeSend(client, flags & FLAG_TEXT ? decoder.decode(whole) : whole);
    },
    end(ws?: WsClose) {
      closeClient(ws?.code ?? 1000, ws?.reason ?? '');
    },
  });
  void stream.done.then((reset) => {
    if (reset) closeClient(reset.code === 'closed' ? 1001 : 1011, reset.message);
  });

  client.addEventListener('message', (ev) => {
    const data = ev.data as string | ArrayBuffer;
    const bytes = typeof data === 'string' ? encoder.encode(data) : new Uint8Array(data);
    const flags = mode === 'bytes' ? 0 : FLAG_MESSAGE_END | (typeof data === 'string' ? FLAG_TEXT : 0);
    queued += bytes.byteLength;
    if (queued > QUEUE_LIMIT) {
      closeClient(1009, 'messages arrive faster than the app takes them');
      stream.reset('closed', 'the client sent faster than the app read');
      return;
    }
    void stream.write(bytes, flags).then(() => (queued -= bytes.byteLength));
  });
  const onClientGone = (code: number, reason: string) => {
    if (!stream.isOpen) return;
    if (mode === 'messages') stream.closeWrite({ code: sendable(code), reason: reason.slice(0, 123) });
    else stream.closeWrite();
    // The app's side answers the close; one that never does is cut off.
    setTimeout(() => stream.reset('closed', 'the client closed the connection'), CLOSE_GRACE_MS);
    if (!clientClosed) closeClient(code, reason);
  };
  client.addEventListener('close', (ev) => onClientGone(ev.code, ev.reason));
  client.addEventListener('error', () => onClientGone(1011, 'client socket error'));
}

function safeSend(ws: WebSocket, data: string | Uint8Array): void {
  try {
    ws.send(data);
  } catch {
    /* the client is closing */
  }
}
