/**
 * The bench's clients of an app, reached either through a preview host
 * (connect to the dev server, Host = the preview name) or straight at a port
 * on this host: time to first byte, download and upload rates, WebSocket
 * round trips, many connections at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';
import WebSocket from 'ws';

/** Where an app answers: the address to connect to and the Host to send. */
export interface Target {
  connect: string;
  host: string;
}

/** A preview URL reached through the dev server at `origin`. */
export const viaPreview = (origin: string, previewUrl: string): Target => ({ connect: new URL(origin).host, host: new URL(previewUrl).host });
/** An app on this host's loopback. */
export const direct = (port: number): Target => ({ connect: `127.0.0.1:${port}`, host: `127.0.0.1:${port}` });

const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function request(t: Target, method: string, path: string, opts: { body?: Readable; headers?: Record<string, string>; onHead?: () => void } = {}): Promise<{ status: number; bytes: number; sha256: string; text: string }> {
  const [hostname, port] = t.connect.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port: Number(port), method, path, headers: { host: t.host, ...opts.headers }, agent }, (res) => {
      opts.onHead?.();
      const h = createHash('sha256');
      let bytes = 0;
      let text = '';
      res.on('data', (d: Buffer) => {
        bytes += d.length;
        h.update(d);
        if (text.length < 4096) text += d.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, sha256: h.digest('hex'), text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.body) opts.body.pipe(req);
    else req.end();
  });
}

/** Milliseconds from sending a small GET to its first response byte, `n` times one after another. */
export async function ttfb(t: Target, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    let first = 0;
    const r = await request(t, 'GET', '/headers', { onHead: () => (first = performance.now()) });
    if (r.status !== 200) throw new Error(`GET /headers: ${r.status} ${r.text}`);
    out.push(first - t0);
  }
  return out;
}

export interface Rate {
  bytes: number;
  seconds: number;
}

export const mibps = (r: Rate): number => r.bytes / 1048576 / r.seconds;

/** Downloads `bytes` from the app's /blob and times it; `during` runs while it does. */
export async function download(t: Target, bytes: number): Promise<Rate> {
  const t0 = performance.now();
  const r = await request(t, 'GET', `/blob?bytes=${bytes}`);
  if (r.status !== 200 || r.bytes !== bytes) throw new Error(`download: ${r.status}, ${r.bytes} of ${bytes} bytes`);
  return { bytes, seconds: (performance.now() - t0) / 1000 };
}

/** Uploads `bytes` to the app's sink and times it until the sink has hashed them all. */
export async function upload(t: Target, bytes: number): Promise<Rate> {
  const block = randomBytes(1 << 20);
  let left = bytes;
  const h = createHash('sha256');
  const body = new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const piece = block.subarray(0, Math.min(left, block.length));
      left -= piece.length;
      h.update(piece);
      this.push(piece);
    },
  });
  const t0 = performance.now();
  const r = await request(t, 'POST', '/upload', { body, headers: { 'content-length': String(bytes), 'content-type': 'application/octet-stream' } });
  const seconds = (performance.now() - t0) / 1000;
  const seen = JSON.parse(r.text) as { bytes: number; sha256: string };
  if (seen.bytes !== bytes || seen.sha256 !== h.digest('hex')) throw new Error(`upload: the sink saw ${seen.bytes} bytes, sha256 ${seen.sha256}`);
  return { bytes, seconds };
}

/** `n` downloads of `bytes` each at once: seconds until all are done, how many failed, and why (a count per reason). */
export async function concurrent(t: Target, n: number, bytes: number): Promise<{ seconds: number; failed: number; why: Record<string, number> }> {
  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: n }, () => request(t, 'GET', `/blob?bytes=${bytes}`)));
  const why: Record<string, number> = {};
  for (const r of results) {
    const reason =
      r.status === 'rejected'
        ? String((r.reason as Error)?.message ?? r.reason)
        : r.value.status !== 200
          ? `${r.value.status} ${r.value.text.slice(0, 120)}`
          : r.value.bytes !== bytes
            ? `cut short at ${r.value.bytes} bytes`
            : '';
    if (reason) why[reason] = (why[reason] ?? 0) + 1;
  }
  const failed = Object.values(why).reduce((a, b) => a + b, 0);
  return { seconds: (performance.now() - t0) / 1000, failed, why };
}

/** Round trips of a small text message through the app's WebSocket echo, one at a time. */
export async function wsEcho(t: Target, n: number): Promise<number[]> {
  const ws = new WebSocket(`ws://${t.connect}/ws`, { headers: { host: t.host }, perMessageDeflate: false });
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      ws.once('message', () => resolve());
      ws.send(`ping ${i}`);
    });
    out.push(performance.now() - t0);
  }
  ws.terminate();
  return out;
}
