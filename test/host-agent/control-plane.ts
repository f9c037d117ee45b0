/**
 * A scripted control plane for a real host agent process: it answers the
 * host socket's hello with a welcome naming the computers to serve, and lets
 * a test send any request (or any bytes at all) down each computer socket and
 * read what comes back, validated with the protocol's schemas. It is what
 * the Durable Objects are to the agent, without their guarantees: the point
 * is to send what they never would.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { AGENT_HOST_PATH, ComputerAgentMessage, HostAgentMessage, PROTOCOL, type ComputerRequest } from '../../schema/protocol.ts';

type Result = Extract<ComputerAgentMessage, { type: 'result' }>;

/** One computer socket, as the object would hold it. */
export class ComputerLink {
  readonly messages: ComputerAgentMessage[] = [];
  private seq = 0;
  private readonly waiters = new Map<string, (r: Result) => void>();
  private attachedWaiters: (() => void)[] = [];
  readonly ws: WebSocket;

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const parsed = ComputerAgentMessage.safeParse(JSON.parse(data.toString()));
      if (!parsed.success) throw new Error(`the agent sent a malformed message: ${data.toString().slice(0, 200)}`);
      this.messages.push(parsed.data);
      if (parsed.data.type === 'result') this.waiters.get(parsed.data.id)?.(parsed.data);
      if (parsed.data.type === 'attached') for (const w of this.attachedWaiters.splice(0)) w();
    });
  }

  /** Resolves once the agent has said `attached` on this socket. */
  attached(): Promise<Extract<ComputerAgentMessage, { type: 'attached' }>> {
    const find = () => this.messages.find((m) => m.type === 'attached') as Extract<ComputerAgentMessage, { type: 'attached' }> | undefined;
    const now = find();
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => this.attachedWaiters.push(() => resolve(find()!)));
  }

  /** Sends a request (whatever it holds) and waits for its result. */
  request(body: Omit<ComputerRequest, 'id'> | Record<string, unknown>, timeoutMs = 60_000): Promise<Result> {
    const id = `t${++this.seq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no result for ${String((body as { type?: string }).type)} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.ws.send(JSON.stringify({ ...body, id }));
    });
  }

  /** Sends bytes as they are: text or binary. */
  raw(data: string | Buffer): void {
    this.ws.send(data);
  }
}

export class ScriptedControlPlane {
  private readonly server: http.Server;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 256 * 1024 * 1024 });
  private readonly links = new Map<string, ComputerLink[]>();
  private readonly linkWaiters = new Map<string, ((l: ComputerLink) => void)[]>();
  hostSockets = 0;
  private readonly computers: string[];

  constructor(computers: string[]) {
    this.computers = computers;
    this.server = http.createServer((_req, res) => res.writeHead(404).end());
    this.server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const m = /^\/agent\/v1\/computers\/([0-9a-f-]+)\/connect$/.exec(url.pathname);
      if (url.pathname !== AGENT_HOST_PATH && !m) {
        socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => (m ? this.computerSocket(m[1], ws) : this.hostSocket(ws)));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The computer's newest socket, waiting for one if there is none yet. */
  link(id: string): Promise<ComputerLink> {
    const have = this.links.get(id)?.at(-1);
    if (have && have.ws.readyState === have.ws.OPEN) return Promise.resolve(have);
    return new Promise((resolve) => this.linkWaiters.set(id, [...(this.linkWaiters.get(id) ?? []), resolve]));
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private hostSocket(ws: WebSocket): void {
    this.hostSockets++;
    ws.on('message', (data) => {
      const msg = HostAgentMessage.parse(JSON.parse(data.toString()));
      if (msg.type !== 'hello') return;
      ws.send(
        JSON.stringify({
          type: 'welcome',
          host_id: 'scripted-host',
          protocol: PROTOCOL,
          heartbeat_interval_ms: 15_000,
          metrics_interval_ms: 600_000,
          computers: this.computers,
        }),
      );
    });
  }

  private computerSocket(id: string, ws: WebSocket): void {
    const link = new ComputerLink(ws);
    this.links.set(id, [...(this.links.get(id) ?? []), link]);
    for (const w of this.linkWaiters.get(id) ?? []) w(link);
    this.linkWaiters.delete(id);
  }
}
