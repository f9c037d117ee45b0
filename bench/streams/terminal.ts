/**
 * Terminals: keystroke echo round trips (send one character to `cat` on a
 * PTY, wait for the line discipline's echo) through a terminal socket, an exec
 * socket with tty, the guest socket directly (no Worker, no agent), and a
 * plain `ws` echo server; and PTY throughput of `cat` of a large file.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import WebSocket from 'ws';
import { GuestClient } from '../../host-agent/guest-client.ts';
import { computerPaths } from '../../host-agent/drivers/sandbox/paths.ts';
import { FRAME, closedOf, dial, dialExec, opened } from '../../test/e2e/sockets.ts';
import type { Stack } from './stack.ts';
import type { Throughput } from './throughput.ts';

const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

/** Times single-character round trips: `send` a character, resolve when output containing it came back. */
export class EchoProbe {
  private seen = '';
  private waiting: { ch: string; resolve: () => void } | null = null;

  feed(text: string): void {
    this.seen += text;
    if (this.waiting && this.seen.includes(this.waiting.ch)) {
      const w = this.waiting;
      this.waiting = null;
      w.resolve();
    }
  }

  async run(send: (s: string) => void, n: number, newline = '\r', warmup = 100): Promise<number[]> {
    const times: number[] = [];
    for (let i = 0; i < n + warmup; i++) {
      const ch = String.fromCharCode(97 + (i % 26));
      const t0 = performance.now();
      await this.roundTrip(send, ch, ch, i);
      if (i >= warmup) times.push(performance.now() - t0);
      // Keep the line short: the line discipline holds at most 4095 characters.
      if (i % 60 === 59 && newline) await this.roundTrip(send, newline, '\n', i);
    }
    return times;
  }

  /** Sends `s` and waits until output containing `expect` arrives (at most 10 s). */
  private roundTrip(send: (s: string) => void, s: string, expect: string, i: number): Promise<void> {
    this.seen = '';
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no echo of ${JSON.stringify(s)} within 10 s (round trip ${i})`)), 10_000);
      this.waiting = {
        ch: expect,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      send(s);
    });
  }
}

interface TerminalSession {
  ws_url: string;
}

/** A new terminal session's socket, through `origin` (the API's, or the Worker's own listener). */
async function terminal(stack: Stack, origin = stack.origin): Promise<WebSocket> {
  const r = await stack.call<{ data: TerminalSession }>('POST', `/computers/${stack.computerId}/terminal`, { cols: 120, rows: 40 });
  if (r.status !== 201) throw new Error(`terminal: ${r.status}`);
  const url = new URL(r.body.data.ws_url);
  const ws = dial(`${origin.replace(/^http/, 'ws')}${url.pathname}${url.search}`, [], {});
  await opened(ws);
  return ws;
}

/** Through a terminal socket: client -> Worker -> ComputerObject -> agent -> guest -> PTY, and back. */
export async function echoTerminal(stack: Stack, n: number, origin = stack.origin): Promise<number[]> {
  const ws = await terminal(stack, origin);
  const probe = new EchoProbe();
  ws.on('message', (d: Buffer) => probe.feed(d.toString()));
  ws.send('exec cat > /dev/null\r');
  await sleep(500);
  const times = await probe.run((s) => ws.send(Buffer.from(s)), n);
  ws.send(Buffer.from([4]));
  ws.close();
  return times;
}

/** Through an exec socket with tty=true (no replay ring on the way). */
export async function echoExecTty(stack: Stack, n: number): Promise<number[]> {
  const ws = dialExec(stack, stack.computerId, { command: 'cat > /dev/null', tty: 'true' });
  const probe = new EchoProbe();
  ws.on('message', (d: Buffer) => d[0] === FRAME.STDOUT && probe.feed(d.subarray(1).toString()));
  await opened(ws);
  const times = await probe.run((s) => ws.send(Buffer.concat([Buffer.from([FRAME.STDIN]), Buffer.from(s)])), n);
  // Closing first hangs the process up (^D would end `cat` only at the start of a line).
  const closed = closedOf(ws);
  ws.close();
  await closed;
  return times;
}

/** The guest alone: this process -> guest socket -> PTY, and back (what the agent itself sees). */
export async function echoGuest(stack: Stack, n: number): Promise<number[]> {
  const guest = await GuestClient.connect(computerPaths(realpathSync(stack.dataDir), stack.computerId).socket);
  const proc = guest.spawn({ command: 'cat > /dev/null', pty: { rows: 40, cols: 120 }, stdin: true });
  const probe = new EchoProbe();
  proc.on('output', (_s, d) => probe.feed(d.toString()));
  await proc.started;
  // A write still waiting for its acknowledgement when the connection closes is refused; that is fine here.
  const times = await probe.run((s) => void proc.write(s).catch(() => undefined), n);
  await proc.signal(9, true);
  guest.close();
  return times;
}

/** The baseline: a plain Node `ws` echo server (baseline-server.ts), one character each way. */
export async function echoWs(base: string, n: number): Promise<number[]> {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/echo`, { perMessageDeflate: false });
  const probe = new EchoProbe();
  ws.on('message', (d: Buffer) => probe.feed(d.toString()));
  await opened(ws);
  const times = await probe.run((s) => ws.send(s), n, '');
  ws.close();
  return times;
}

const BEGIN = Buffer.from('@@BEGIN@@\n');
const END = Buffer.from('@@END@@');

/** Hashes the bytes between BEGIN and END in a byte stream fed in chunks. */
class Between {
  readonly hash = createHash('sha256');
  bytes = 0;
  startedAt = 0;
  private held = Buffer.alloc(0);
  private inside = false;
  done: Promise<void>;
  private finish!: () => void;

  constructor() {
    this.done = new Promise((r) => (this.finish = r));
  }

  private ended = false;

  feed(d: Buffer): void {
    if (this.ended) return; // the prompt after the end marker
    let buf = Buffer.concat([this.held, d]);
    if (!this.inside) {
      const i = buf.indexOf(BEGIN);
      if (i === -1) {
        this.held = buf.subarray(Math.max(0, buf.length - BEGIN.length));
        return;
      }
      this.inside = true;
      this.startedAt = performance.now();
      buf = buf.subarray(i + BEGIN.length);
    }
    const j = buf.indexOf(END);
    const upto = j === -1 ? Math.max(0, buf.length - END.length) : j;
    this.hash.update(buf.subarray(0, upto));
    this.bytes += upto;
    this.held = buf.subarray(upto);
    if (j !== -1) {
      this.ended = true;
      this.finish();
    }
  }
}

/** The command typed into a shell: output processing off, the file between markers the echo of the line cannot match. */
const catCommand = (file: string) => `stty -echo -opost; printf '@@BEG''IN@@\\n'; cat ${file}; printf '@@E''ND@@\\n'`;

/** `cat` of a file through a terminal socket. */
export async function ptyTerminal(stack: Stack, file: string): Promise<Throughput> {
  const ws = await terminal(stack);
  const b = new Between();
  ws.on('message', (d: Buffer) => b.feed(d));
  await sleep(300);
  ws.send(`${catCommand(file)}\r`);
  await b.done;
  const seconds = (performance.now() - b.startedAt) / 1000;
  ws.send('exit\r');
  ws.close();
  return { bytes: b.bytes, seconds, sha256: b.hash.digest('hex'), ending: 'end marker' };
}

/** The baseline: the same through a local PTY on the host (util-linux `script`). */
export function ptyLocal(file: string): Promise<Throughput> {
  return new Promise((resolve, reject) => {
    const b = new Between();
    const child = spawn('script', ['-qfc', `${catCommand(file)}`, '/dev/null'], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.stdout.on('data', (d: Buffer) => b.feed(d));
    child.on('error', reject);
    void b.done.then(() => resolve({ bytes: b.bytes, seconds: (performance.now() - b.startedAt) / 1000, sha256: b.hash.digest('hex'), ending: 'end marker' }));
  });
}
