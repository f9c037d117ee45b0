/**
 * The relayed streams of one agent socket (a computer socket or a host
 * socket). The session that serves the socket supplies the target openers it
 * allows — a computer session opens `computer_tcp` through the computer's
 * guest, a tenant host's session `host_tcp` on its loopback — and feeds every
 * relay message and frame here. A stream whose target has no opener is
 * refused as `unsupported`; a socket that drops takes its streams with it.
 */
import type { Duplex } from 'node:stream';
import {
  FRAME_RELAY,
  MIN_WINDOW,
  RelayServerMessage,
  decodeRelayFrame,
  isRelayMessage,
  type RelayOpen,
  type RelayTarget,
  type RelayTargetKind,
  type ResetCode,
} from '../../schema/relay.ts';
import { frameKind } from '../../schema/protocol.ts';
import { WindowBudget } from '../../schema/relay-window.ts';
import type { Logger } from '../log.ts';
import { AgentStream, type RelayOutlet } from './agent-stream.ts';
import { bridgeTcp } from './tcp-bridge.ts';
import { bridgeHttp } from './http-bridge.ts';
import { bridgeWebSocket } from './ws-bridge.ts';
import { RelayTargetError } from './target-error.ts';

/** Connects to a target; rejects with RelayTargetError (or any error, taken as `error`). */
export type TargetOpener<T extends RelayTarget = RelayTarget> = (target: T) => Promise<Duplex>;
/** An opener per kind of target, each given targets of its kind. */
export type TargetOpeners = { [K in RelayTargetKind]?: TargetOpener<Extract<RelayTarget, { kind: K }>> };

/** Our receive window per stream: what one stream may have in flight towards a slow target. */
export const AGENT_WINDOW = 1024 * 1024;
/** How far our streams' windows may grow beyond AGENT_WINDOW, all together (schema/relay-window.ts). */
export const AGENT_WINDOW_GROWTH_BUDGET = 64 * 1024 * 1024;
/** Streams per socket at once. */
export const AGENT_MAX_STREAMS = 1024;
/** A target that does not connect within this long is given up. */
const CONNECT_TIMEOUT_MS = 10_000;

export class AgentRelay {
  private readonly streams = new Map<string, AgentStream>();
  private readonly out: RelayOutlet;
  private readonly openers: TargetOpeners;
  private readonly log: Logger;
  private readonly budget = new WindowBudget(AGENT_WINDOW_GROWTH_BUDGET);
  /** Changes with every connection, so a connect finishing after a drop does not bridge into a later socket. */
  private epoch = 0;

  constructor(out: RelayOutlet, openers: TargetOpeners, log: Logger) {
    this.out = out;
    this.openers = openers;
    this.log = log;
  }

  get size(): number {
    return this.streams.size;
  }

  /** A parsed JSON message from the server: handled (true) when it is the relay's. */
  onJson(raw: unknown): boolean {
    if (!isRelayMessage(raw)) return false;
    const parsed = RelayServerMessage.safeParse(raw);
    if (!parsed.success) {
      const id = (raw as { stream_id?: unknown }).stream_id;
      this.log(`relay: dropped a malformed ${(raw as { type: string }).type}: ${parsed.error.issues[0]?.message}`);
      if (typeof id === 'string' && /^[a-z0-9]{1,32}$/.test(id)) this.refuse(id, 'protocol', 'malformed relay message');
      return true;
    }
    const msg = parsed.data;
    if (msg.type === 'relay.open') {
      this.open(msg);
      return true;
    }
    const s = this.streams.get(msg.stream_id);
    if (!s) return true; // ended here already; the server learns from our reset or close
    if (msg.type === 'relay.credit') s.onCredit(msg.offset, msg.window);
    else if (msg.type === 'relay.close') s.onClose(msg.offset, msg.ws);
    else s.onReset(msg.code, msg.message);
    return true;
  }

  /** A binary message from the server: handled (true) when it is a relay frame. */
  onBinary(buf: Buffer): boolean {
    if (frameKind(buf) !== FRAME_RELAY) return false;
    const f = decodeRelayFrame(buf);
    if (!f) {
      this.log('relay: dropped a malformed frame');
      return true;
    }
    this.streams.get(f.stream_id)?.onFrame(f.offset, f.flags, Buffer.from(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength));
    return true;
  }

  /** The socket dropped: every connection it carried is gone (the server resets its side too). */
  connectionLost(): void {
    this.epoch++;
    for (const s of [...this.streams.values()]) s.onReset('unreachable', 'the connection to the server was lost');
    this.streams.clear();
  }

  private open(msg: RelayOpen): void {
    if (this.streams.has(msg.stream_id)) return this.refuse(msg.stream_id, 'protocol', 'stream id already in use');
    const opener = this.openers[msg.target.kind] as TargetOpener | undefined;
    if (!opener) return this.refuse(msg.stream_id, 'unsupported', `this agent does not serve ${msg.target.kind} targets on this connection`);
    if (this.streams.size >= AGENT_MAX_STREAMS) return this.refuse(msg.stream_id, 'limit', `too many relayed connections (${AGENT_MAX_STREAMS})`);
    const stream = new AgentStream(msg.stream_id, msg.window, Math.max(MIN_WINDOW, AGENT_WINDOW), this.out, { peerWidens: msg.widen === true, budget: this.budget });
    this.streams.set(msg.stream_id, stream);
    stream.onDone = () => {
      if (this.streams.get(msg.stream_id) === stream) this.streams.delete(msg.stream_id);
    };
    const epoch = this.epoch;
    // An HTTP or WebSocket stream is bridged while its connection may still be opening (its request is written at
    // once, a refusal surfaces as the request's error); a raw stream is accepted only once connected.
    void connectWithin(opener, msg.target, CONNECT_TIMEOUT_MS, !msg.http).then(
      (socket) => {
        if (stream.isOver || epoch !== this.epoch) return void socket.destroy();
        if (!msg.http) bridgeTcp(stream, socket);
        else if (msg.http.websocket) bridgeWebSocket(stream, socket, msg.http);
        else bridgeHttp(stream, socket, msg.http);
      },
      (err: unknown) => {
        const e = RelayTargetError.from(err);
        if (e.code === 'error') this.log(`relay: opening ${msg.target.kind}:${'port' in msg.target ? msg.target.port : ''} failed: ${e.message}`);
        stream.reset(e.code, e.message);
      },
    );
  }

  private refuse(id: string, code: ResetCode, message: string): void {
    this.out.sendJson({ type: 'relay.reset', stream_id: id, code, message });
  }
}

/** The opener's connection; with `established`, only once it has connected (not `pending`). */
function connectWithin(opener: TargetOpener, target: RelayTarget, ms: number, established: boolean): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => finish(new RelayTargetError('timeout', `the connection to port ${'port' in target ? target.port : '?'} did not open within ${ms / 1000} s`)), ms);
    let opened: Duplex | null = null;
    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        opened?.destroy();
        reject(err);
      } else resolve(opened!);
    };
    opener(target).then(
      (socket) => {
        opened = socket;
        if (settled) return void socket.destroy();
        if (!established || !(socket as { pending?: boolean }).pending) return finish(null);
        socket.once('connect', () => finish(null));
        socket.once('error', (e: Error) => finish(e));
        socket.once('close', () => finish(new RelayTargetError('reset', 'the connection closed while opening')));
      },
      (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))),
    );
  });
}
