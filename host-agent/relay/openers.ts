/**
 * Target openers: how an agent reaches a relay target. A session passes the
 * ones it serves to its AgentRelay. To add a target kind: a variant in
 * RelayTarget (schema/relay.ts), an opener here, and the session that may
 * serve it passes it in (docs/relay.md).
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { RelayTarget } from '../../schema/relay.ts';
import { RelayTargetError } from './target-error.ts';
import type { TargetOpener } from './agent-relay.ts';

/** A TCP connection to `host:port`, half-open capable so a FIN each way passes as one. */
export function connectTcp(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true });
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * A port on this machine's loopback: 127.0.0.1, then ::1 (a server bound to
 * "localhost" may listen on either).
 */
export async function connectLoopback(port: number): Promise<net.Socket> {
  try {
    return await connectTcp('127.0.0.1', port);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ECONNREFUSED') throw err;
    try {
      return await connectTcp('::1', port);
    } catch {
      throw new RelayTargetError('refused', `nothing is listening on port ${port}`);
    }
  }
}

/** Opener for `host_tcp`: the host's own loopback (tenant hosts serving tunnels). */
export const hostTcpOpener: TargetOpener = (target: RelayTarget): Promise<Duplex> => {
  if (target.kind !== 'host_tcp') return Promise.reject(new RelayTargetError('unsupported', `not a host_tcp target: ${target.kind}`));
  return connectLoopback(target.port);
};
