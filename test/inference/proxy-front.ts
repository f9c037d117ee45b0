/**
 * A plain HTTP front for proxyInference, standing where the Worker's
 * inference route stands, with loopback fetch as the transport where the
 * relay carries bytes in production. Streams both ways; nothing buffered.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { proxyInference, type MemberPicker, type MemberTransport } from '../../durable-objects/cluster/inference-proxy.ts';

export const loopbackTransport: MemberTransport = {
  async send(_pick, request) {
    try {
      return { ok: true, response: await fetch(request) };
    } catch (e) {
      return { ok: false, error: String((e as Error & { cause?: Error }).cause?.message ?? (e as Error).message) };
    }
  },
};

export async function serveProxy(picker: MemberPicker, transport: MemberTransport = loopbackTransport): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(async (req, res) => {
    res.socket?.setNoDelay(true);
    const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : (Readable.toWeb(req) as ReadableStream<Uint8Array>);
    const request = new Request(`http://front${req.url}`, { method: req.method, headers: req.headers as Record<string, string>, body, duplex: 'half' } as RequestInit);
    const path = new URL(request.url).pathname.replace(/^\/v1/, '');
    const response = await proxyInference(request, path, picker, transport);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (!response.body) return res.end();
    res.flushHeaders();
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        res.write(value);
      }
      res.end();
    } catch {
      res.destroy();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
