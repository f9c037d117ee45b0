/**
 * Clients of preview hosts for end-to-end tests: HTTP and WebSocket requests
 * to `{port}-{slug}.sandbox.localhost:<port>` sent to the dev server's
 * address with that Host (so no name resolution is involved), and the memory
 * of a process tree, to show a transfer holds no more than its windows.
 */
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { Readable } from 'node:stream';
import WebSocket from 'ws';
import { hangar } from './client.ts';

export interface PreviewReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The raw response, unread (for streamed bodies). */
  stream: http.IncomingMessage;
  text(): Promise<string>;
  json<T = Record<string, unknown>>(): Promise<T>;
}

/** A request to a preview URL; `body` may be a Readable (sent chunked unless content-length is given). */
export function previewRequest(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer | Readable } = {}): Promise<PreviewReply> {
  const u = new URL(url);
  const origin = new URL(hangar().origin);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: origin.hostname, port: origin.port, method: opts.method ?? 'GET', path: u.pathname + u.search, headers: { host: u.host, ...opts.headers }, agent: false },
      (res) => {
        const read = () =>
          new Promise<string>((ok, fail) => {
            const parts: Buffer[] = [];
            res.on('data', (d: Buffer) => parts.push(d));
            res.on('end', () => ok(Buffer.concat(parts).toString()));
            res.on('error', fail);
          });
        resolve({ status: res.statusCode ?? 0, headers: res.headers, stream: res, text: read, json: async () => JSON.parse(await read()) });
      },
    );
    req.on('error', reject);
    if (opts.body === undefined) req.end();
    else if (typeof opts.body === 'string' || Buffer.isBuffer(opts.body)) req.end(opts.body);
    else opts.body.pipe(req);
  });
}

/** A WebSocket to a preview URL (ws:// form of it), through the dev server's address. */
export function previewSocket(url: string, protocols: string[] = [], headers: Record<string, string> = {}): WebSocket {
  const u = new URL(url);
  const origin = new URL(hangar().origin);
  const ws = new WebSocket(`ws://${origin.host}${u.pathname}${u.search}`, protocols, { headers: { host: u.host, ...headers }, perMessageDeflate: false, closeTimeout: 250 } as WebSocket.ClientOptions);
  ws.binaryType = 'nodebuffer';
  return ws;
}

/** Resident memory, in bytes, of each process (Linux /proc), and each process's children. */
function processTable(): { rss: Map<number, number>; children: Map<number, number[]> } {
  const children = new Map<number, number[]>();
  const rss = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const pid = Number(name);
      const ppid = Number(fields[1]);
      // Field 24 of stat (22 after the name) is the resident set in pages.
      rss.set(pid, Number(fields[21]) * 4096);
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    } catch {
      /* the process ended meanwhile */
    }
  }
  return { rss, children };
}

/** Resident memory of a process and all its descendants, in bytes. */
export function treeRss(root: number): number {
  const { rss, children } = processTable();
  let total = 0;
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop()!;
    total += rss.get(pid) ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return total;
}

/** Resident memory of one process, in bytes (0 once it is gone). */
export function processRss(pid: number): number {
  return processTable().rss.get(pid) ?? 0;
}

/**
 * The relay's own memory: the dev server's process tree (Worker and objects)
 * and the host agent's process. Not the agent's children: those are the
 * computers, whose own programs (a desktop starting up, the app itself) are
 * the tenant's memory, not the relay's.
 */
export function relayRss(h: { workerPid: number; agentPid: number }): { worker: number; agent: number } {
  return { worker: treeRss(h.workerPid), agent: processRss(h.agentPid) };
}

export interface MemoryTrace {
  /** Before the transfer. */
  base: number;
  /** Largest value while the first half of the bytes moved, and while the second half did. */
  firstHalf: number;
  secondHalf: number;
}

/**
 * Samples a resident memory (`measure`: a process tree, one process) every
 * 100 ms during a transfer, against its progress (0..1). A relay that buffers
 * grows with the bytes moved; one bounded by windows is flat once under way.
 */
export function traceMemory(measure: () => number, progress: () => number): { stop(): MemoryTrace } {
  const base = measure();
  const samples: [number, number][] = [];
  const t = setInterval(() => samples.push([progress(), measure()]), 100);
  return {
    stop() {
      clearInterval(t);
      samples.push([1, measure()]);
      const max = (lo: number, hi: number) => Math.max(base, ...samples.filter(([p]) => p >= lo && p < hi).map(([, r]) => r));
      return { base, firstHalf: max(0, 0.5), secondHalf: max(0.5, 1.01) };
    },
  };
}
