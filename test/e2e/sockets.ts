/**
 * WebSocket clients for end-to-end tests: exec over `miosa-exec-v1` and
 * terminal sessions, as a program (the SDK, xterm.js) drives them.
 */
import WebSocket from 'ws';
import type { Client } from './client.ts';

/** Exec socket frame types (docs/streams.md). */
export const FRAME = { STDIN: 0x00, STDOUT: 0x01, STDERR: 0x02, EXIT: 0x03, STDIN_EOF: 0x04, RESIZE: 0x05 } as const;

export interface Closed {
  code: number;
  reason: string;
}

/** Received text (UTF-8 decoded as it streams) that a test can wait on. */
class Tap {
  text = '';
  private readonly decoder = new TextDecoder();
  private waiters: (() => void)[] = [];

  push(bytes: Uint8Array): void {
    this.text += this.decoder.decode(bytes, { stream: true });
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves with the first match of `re` in the text from `from` on. */
  async waitFor(re: RegExp, from = 0, ms = 30_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.text.slice(from));
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`no ${re} within ${ms} ms; got ${JSON.stringify(this.text.slice(-500))}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
}

/**
 * A WebSocket with our listeners on it before it opens: bytes the server sends
 * with its 101 are emitted on the next tick, before an awaiting caller resumes.
 */
export function dial(url: string, protocols: string[], headers: Record<string, string>): WebSocket {
  // workerd under wrangler dev answers a close handshake but leaves the TCP connection open
  // (cloudflare/workerd#2569), so without this `close` would wait ws's default 30 s.
  const opts: WebSocket.ClientOptions & { closeTimeout: number } = { headers, perMessageDeflate: false, closeTimeout: 250 };
  const ws = new WebSocket(url, protocols, opts);
  ws.binaryType = 'nodebuffer';
  return ws;
}

/** Resolves once the socket is open; rejects with the HTTP status when the upgrade is refused. */
export function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
    ws.once('close', (code, reason) => reject(new Error(`closed before it opened: ${code} ${reason.toString()}`)));
  });
}

export const closedOf = (ws: WebSocket): Promise<Closed> => new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));

/** An exec socket (`miosa-exec-v1`) being opened, for a caller that reads its frames itself. */
export function dialExec(api: Pick<Client, 'apiUrl' | 'key'>, computerId: string, query: Record<string, string>): WebSocket {
  const url = `${api.apiUrl.replace(/^http/, 'ws')}/computers/${computerId}/exec/stream?${new URLSearchParams(query)}`;
  return dial(url, ['miosa-exec-v1'], { authorization: `Bearer ${api.key}` });
}

/** One process over `miosa-exec-v1`. */
export class ExecSocket {
  readonly stdout = new Tap();
  readonly stderr = new Tap();
  exitCode: number | null = null;
  readonly closed: Promise<Closed>;
  readonly ws: WebSocket;

  constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = closedOf(ws);
    ws.on('message', (data: Buffer) => {
      const body = data.subarray(1);
      if (data[0] === FRAME.STDOUT) this.stdout.push(body);
      else if (data[0] === FRAME.STDERR) this.stderr.push(body);
      else if (data[0] === FRAME.EXIT) this.exitCode = body.readUInt32BE(0);
    });
  }

  static async open(api: Pick<Client, 'apiUrl' | 'key'>, computerId: string, query: Record<string, string>): Promise<ExecSocket> {
    const s = new ExecSocket(dialExec(api, computerId, query));
    await opened(s.ws);
    return s;
  }

  write(data: string | Uint8Array): void {
    this.ws.send(Buffer.concat([Buffer.from([FRAME.STDIN]), typeof data === 'string' ? Buffer.from(data) : data]));
  }

  closeStdin(): void {
    this.ws.send(Buffer.from([FRAME.STDIN_EOF]));
  }

  resize(rows: number, cols: number): void {
    const f = Buffer.alloc(5);
    f[0] = FRAME.RESIZE;
    f.writeUInt16BE(rows, 1);
    f.writeUInt16BE(cols, 3);
    this.ws.send(f);
  }
}

/** A terminal session's socket: raw bytes both ways. */
export class TerminalSocket {
  readonly out = new Tap();
  readonly closed: Promise<Closed>;
  readonly ws: WebSocket;

  constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = closedOf(ws);
    ws.on('message', (data: Buffer) => this.out.push(data));
  }

  static async open(wsUrl: string): Promise<TerminalSocket> {
    const s = new TerminalSocket(dial(wsUrl, [], {}));
    await opened(s.ws);
    return s;
  }

  type(text: string): void {
    this.ws.send(Buffer.from(text));
  }

  /** Goes away as a closed laptop lid would: no close handshake. */
  drop(): void {
    this.ws.terminate();
  }
}

export interface TerminalSession {
  session_id: string;
  ws_url: string;
  stream_auth: string;
  expires_at: number;
  computer_id: string;
}

/** POST …/terminal; 201 expected. */
export async function createTerminal(api: Client, computerId: string, body: Record<string, unknown> = {}): Promise<TerminalSession> {
  const r = await api.post<{ data: TerminalSession }>(`/computers/${computerId}/terminal`, body);
  if (r.status !== 201) throw new Error(`terminal create: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.data;
}

export interface EventFrame {
  type: string;
  data: Record<string, unknown>;
  timestamp: string;
}

/** An events socket (`miosa-events-v1`) that collects its parsed frames. */
export class EventsSocket {
  readonly frames: EventFrame[] = [];
  readonly closed: Promise<Closed>;
  readonly ws: WebSocket;
  private constructor(ws: WebSocket) {
    this.ws = ws;
    this.closed = closedOf(ws);
    ws.on('message', (data: Buffer) => this.frames.push(JSON.parse(data.toString()) as EventFrame));
  }

  /** Opens GET …/computers/{id}/events?{query} as a socket. */
  static async open(api: Pick<Client, 'apiUrl' | 'key'>, computerId: string, query: string): Promise<EventsSocket> {
    const url = `${api.apiUrl.replace(/^http/, 'ws')}/computers/${computerId}/events?${query}`;
    const s = new EventsSocket(dial(url, ['miosa-events-v1'], { authorization: `Bearer ${api.key}` }));
    await opened(s.ws);
    return s;
  }

  /** The first frame (from `from` on) that `pred` accepts, waiting up to `ms`. */
  async until(pred: (f: EventFrame) => boolean, ms = 30_000, from = 0): Promise<EventFrame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.frames.slice(from).find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no such frame within ${ms} ms; got ${JSON.stringify(this.frames.slice(-10))}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}
