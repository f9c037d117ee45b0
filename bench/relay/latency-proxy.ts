/**
 * A TCP proxy that delays every byte by half a round trip each way, for the
 * bench's agent to dial through: between a Cloudflare edge and a host the
 * agent link has tens of milliseconds of round trip, not loopback's tenths,
 * and a relay stream's window must cover that. It delays without limiting
 * bandwidth (it holds whatever is in flight), so what it measures is the
 * relay's own flow control.
 */
import net from 'node:net';
import { freePort } from '../../scripts/local-stack.ts';

export interface LatencyProxy {
  /** `http://127.0.0.1:<port>`: give it to the agent as the API origin. */
  origin: string;
  close(): Promise<void>;
}

/** Forwards to `target` (host:port) with `rttMs` of round trip added. */
export async function latencyProxy(target: string, rttMs: number): Promise<LatencyProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const half = rttMs / 2;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host, port, noDelay: true });
    inbound.setNoDelay(true);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    delayed(inbound, outbound, half);
    delayed(outbound, inbound, half);
  });
  const listenPort = await freePort();
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${listenPort}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Pipes `from` into `to`, each chunk `ms` later than it arrived, in order; an end follows the last chunk. */
function delayed(from: net.Socket, to: net.Socket, ms: number): void {
  const queue: Array<{ at: number; chunk: Buffer | null }> = [];
  let timer: NodeJS.Timeout | null = null;
  const pump = () => {
    timer = null;
    const now = performance.now();
    while (queue.length && queue[0].at <= now) {
      const { chunk } = queue.shift()!;
      if (chunk === null) to.end();
      else if (!to.destroyed) to.write(chunk);
    }
    if (queue.length) timer = setTimeout(pump, Math.max(0, queue[0].at - now));
  };
  const add = (chunk: Buffer | null) => {
    queue.push({ at: performance.now() + ms, chunk });
    timer ??= setTimeout(pump, ms);
  };
  from.on('data', (c: Buffer) => add(c));
  from.on('end', () => add(null));
}
