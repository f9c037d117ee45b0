/**
 * Both ends of the relay over one real WebSocket, in Node: the object's
 * RelayMux (durable-objects/relay/) on the server end, the agent's AgentRelay
 * (host-agent/relay/) on the client end, with the openers a test gives. The
 * server end is not inside workerd, but it is the same module the objects
 * compose; test/worker/relay*.test.ts drive it inside workerd.
 */
import { once } from 'node:events';
import net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { AgentRelay, type TargetOpeners } from '../../host-agent/relay/agent-relay.ts';
import { RelayMux } from '../../durable-objects/relay/relay-mux.ts';
import { sendBinaryMessage } from '../../host-agent/reconnecting-socket.ts';

export interface RelayPair {
  mux: RelayMux;
  agent: AgentRelay;
  /** Drops the WebSocket as a network failure would. */
  drop(): void;
  close(): Promise<void>;
  /** Bytes the server end has received on the socket (all kinds of messages). */
  serverBytesIn(): number;
}

const toArrayBuffer = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

export async function relayPair(openers: TargetOpeners, log: (s: string) => void = () => {}): Promise<RelayPair> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const port = (wss.address() as net.AddressInfo).port;
  let serverWs: WebSocket | null = null;
  let bytesIn = 0;
  const mux = new RelayMux({ socket: () => (serverWs?.readyState === WebSocket.OPEN ? (serverWs as unknown as globalThis.WebSocket) : null) });
  const connected = new Promise<void>((resolve) => {
    wss.on('connection', (ws) => {
      serverWs = ws;
      const asWorkers = ws as unknown as globalThis.WebSocket;
      ws.on('message', (data: Buffer, isBinary) => {
        bytesIn += data.length;
        if (isBinary) {
          if (!mux.onBinary(asWorkers, toArrayBuffer(data))) throw new Error('a binary message that is not a relay frame');
        } else if (!mux.onJson(asWorkers, JSON.parse(data.toString()))) throw new Error(`not a relay message: ${data.toString()}`);
      });
      ws.on('close', () => mux.linkGone(asWorkers));
      resolve();
    });
  });
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  const agent = new AgentRelay(
    {
      sendJson: (m) => client.readyState === WebSocket.OPEN && (client.send(JSON.stringify(m)), true),
      sendBinary: (b) => client.readyState === WebSocket.OPEN && (sendBinaryMessage(client, b), true),
    },
    openers,
    log,
  );
  client.on('message', (data: Buffer, isBinary) => {
    if (isBinary) {
      if (!agent.onBinary(data)) throw new Error('a binary message that is not a relay frame');
    } else if (!agent.onJson(JSON.parse(data.toString()))) throw new Error(`not a relay message: ${data.toString()}`);
  });
  client.on('close', () => agent.connectionLost());
  await Promise.all([once(client, 'open'), connected]);
  return {
    mux,
    agent,
    drop: () => client.terminate(),
    serverBytesIn: () => bytesIn,
    close: async () => {
      client.terminate();
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}
