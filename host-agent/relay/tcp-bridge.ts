/**
 * A raw relayed stream joined to a connection to its target: bytes each way
 * under the stream's credit (the target's reads pause while the server has
 * given no room), FIN as a half-close (the socket is half-open capable), RST
 * as an abortive close.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { AgentStream } from './agent-stream.ts';
import { RelayTargetError } from './target-error.ts';

/** Closes a connection abortively: an RST on a TCP socket, a plain destroy otherwise. */
export function abort(socket: Duplex): void {
  const tcp = socket as Partial<net.Socket>;
  if (typeof tcp.resetAndDestroy === 'function' && !socket.destroyed) {
    try {
      tcp.resetAndDestroy();
      return;
    } catch {
      /* not connected: destroy below */
    }
  }
  socket.destroy();
}

export function bridgeTcp(stream: AgentStream, socket: Duplex): void {
  stream.accept({
    data(payload, _flags, taken) {
      if (socket.destroyed || socket.writableEnded) return taken();
      socket.write(payload, () => taken());
    },
    end() {
      socket.end();
    },
    reset() {
      abort(socket);
    },
  });
  socket.on('data', (chunk: Buffer) => {
    if (!stream.write(chunk)) socket.pause();
  });
  stream.onDrain = () => socket.resume();
  socket.on('end', () => stream.end());
  socket.on('error', (err) => {
    const e = RelayTargetError.from(err);
    stream.reset(e.code === 'error' ? 'reset' : e.code, `the connection to the target failed: ${e.message}`);
  });
}
