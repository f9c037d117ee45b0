/**
 * A local bridge for native VNC clients (TigerVNC, RealVNC, Remmina, macOS
 * Screen Sharing), which speak RFB over TCP while Hangar carries it over a
 * WebSocket: listens on 127.0.0.1 and joins each connection to the desktop's
 * WebSocket, byte for byte.
 *
 *   node scripts/vnc-bridge.ts <ws_url> [--port 5901]
 *
 * <ws_url> is the viewer password's `ws_url` (the VNC client then asks for
 * the viewer password) or vnc-credentials' `ws_url` (a stream token: no
 * password, but it must be used within its five minutes). Any WebSocket-to-TCP
 * tool does the same (e.g. `websocat --binary tcp-l:127.0.0.1:5901 <ws_url>`).
 */
import net from 'node:net';
import WebSocket from 'ws';

export interface Bridge {
  port: number;
  close(): Promise<void>;
}

/** Starts a bridge; `host` overrides the Host header (a computer host this machine cannot resolve). */
export async function startVncBridge(wsUrl: string, opts: { port?: number; host?: string; log?: (s: string) => void } = {}): Promise<Bridge> {
  const log = opts.log ?? (() => {});
  const server = net.createServer((tcp) => {
    tcp.setNoDelay(true);
    const ws = new WebSocket(wsUrl, { headers: opts.host ? { host: opts.host } : {}, perMessageDeflate: false });
    ws.binaryType = 'nodebuffer';
    const early: Buffer[] = [];
    tcp.on('data', (d) => (ws.readyState === WebSocket.OPEN ? ws.send(d) : early.push(d)));
    ws.on('open', () => {
      for (const d of early.splice(0)) ws.send(d);
    });
    ws.on('message', (d: Buffer) => tcp.write(d));
    ws.on('unexpected-response', (_req, res) => {
      log(`the desktop refused the connection: HTTP ${res.statusCode}`);
      tcp.destroy();
    });
    ws.on('close', () => tcp.end());
    ws.on('error', (e) => {
      log(`desktop connection failed: ${e.message}`);
      tcp.destroy();
    });
    tcp.on('close', () => ws.close());
    tcp.on('error', () => ws.close());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  return { port, close: () => new Promise((r) => server.close(() => r())) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const url = args.find((a) => /^wss?:\/\//.test(a));
  const portAt = args.indexOf('--port');
  if (!url) {
    console.error('usage: node scripts/vnc-bridge.ts <ws_url> [--port 5901]\n  <ws_url>: from GET /computers/{id}/viewer-password (asks for the password) or vnc-credentials');
    process.exit(2);
  }
  const bridge = await startVncBridge(url, { port: portAt >= 0 ? Number(args[portAt + 1]) : 5901, log: (s) => console.error(s) });
  console.log(`VNC clients: connect to 127.0.0.1:${bridge.port} (display ${bridge.port - 5900 >= 0 ? `:${bridge.port - 5900}` : bridge.port}); Ctrl-C ends the bridge`);
}
