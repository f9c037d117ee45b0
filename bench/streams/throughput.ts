/**
 * Streaming throughput of `base64` of a random file: through SSE (line events,
 * stored in the object's SQLite before they are acknowledged), through an
 * exec WebSocket (raw frames), and — the baseline — the same command's pipe
 * read straight on the host. Each checks the sha256 of what arrived.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { get, type IncomingMessage } from 'node:http';
import { FRAME, closedOf, dialExec, opened } from '../../test/e2e/sockets.ts';
import type { Stack } from './stack.ts';

export interface Throughput {
  bytes: number;
  seconds: number;
  sha256: string;
  /** How the command ended (exit code, or the terminal event). */
  ending: string;
  /** SSE: events never received (ids skipped). */
  skipped?: number;
}

export const mibps = (t: Throughput): number => t.bytes / 1048576 / t.seconds;

/** The command's stdout as SSE line events, rebuilt and hashed as they arrive. */
export async function viaSse(stack: Stack, command: string): Promise<Throughput> {
  const t0 = performance.now();
  const t = await stack.call<{ stream_url: string }>('POST', `/computers/${stack.computerId}/exec/stream`, { command, timeout: 300 });
  if (t.status !== 202) throw new Error(`exec/stream: ${t.status}`);
  // node:http rather than fetch: its stream costs this client (which shares the machine with the relay) a third less.
  const res = await new Promise<IncomingMessage>((resolve, reject) => get(stack.origin + t.body.stream_url, resolve).on('error', reject));
  if (res.statusCode !== 200) throw new Error(`events: ${res.statusCode}`);
  res.setEncoding('utf8');
  const hash = createHash('sha256');
  let bytes = 0;
  let rest = '';
  let ending = 'stream ended without a terminal event';
  let lastId = 0;
  let skipped = 0;
  const head = '{"line":';
  const tail = ',"stream":"stdout"}';
  for await (const chunk of res as AsyncIterable<string>) {
    const text = rest + chunk;
    // A read's stdout lines are decoded by one JSON.parse of their string literals and hashed at
    // once: parsing and hashing each event alone would cost this client (on the relay's cores) more.
    const literals: string[] = [];
    let at = 0;
    for (let end = text.indexOf('\n\n', at); end !== -1; end = text.indexOf('\n\n', at)) {
      const start = at;
      at = end + 2;
      if (!text.startsWith('id: ', start)) continue; // a comment (heartbeat) or the retry hint
      const idEnd = text.indexOf('\n', start);
      const id = Number(text.slice(start + 4, idEnd));
      skipped += id - lastId - 1;
      lastId = id;
      const data = text.indexOf('\ndata: ', idEnd) + 7;
      if (!text.startsWith('\nevent: output\n', idEnd)) ending = `${text.slice(idEnd + 1, data - 7)} ${text.slice(data, end)}`;
      else if (text.startsWith(head, data) && text.startsWith(tail, end - tail.length)) literals.push(text.slice(data + head.length, end - tail.length));
      else literals.push(JSON.stringify((JSON.parse(text.slice(data, end)) as { line: string }).line));
    }
    const lines = (JSON.parse(`[${literals.join(',')}]`) as string[]).join('');
    hash.update(lines);
    bytes += lines.length;
    rest = text.slice(at);
  }
  return { bytes, seconds: (performance.now() - t0) / 1000, sha256: hash.digest('hex'), ending, skipped };
}

/** The command's stdout over an exec WebSocket (miosa-exec-v1). */
export async function viaExecSocket(stack: Stack, command: string): Promise<Throughput> {
  const t0 = performance.now();
  const hash = createHash('sha256');
  let bytes = 0;
  let exit = -1;
  const ws = dialExec(stack, stack.computerId, { command });
  ws.on('message', (d: Buffer) => {
    if (d[0] === FRAME.EXIT) exit = d.readUInt32BE(1);
    if (d[0] !== FRAME.STDOUT) return;
    hash.update(d.subarray(1));
    bytes += d.byteLength - 1;
  });
  const closed = closedOf(ws);
  await opened(ws);
  const { code } = await closed;
  return { bytes, seconds: (performance.now() - t0) / 1000, sha256: hash.digest('hex'), ending: `exit ${exit} (close ${code})` };
}

/** The baseline: a host process's stdout read through a plain pipe. */
export function viaLocalPipe(file: string, args: string[]): Promise<Throughput> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const hash = createHash('sha256');
    let bytes = 0;
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.byteLength;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ bytes, seconds: (performance.now() - t0) / 1000, sha256: hash.digest('hex'), ending: `exit ${code}` }));
  });
}
