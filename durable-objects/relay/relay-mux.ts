/**
 * The relayed streams of one agent link, as a Durable Object composes them
 * (ComputerObject over its computer socket, HostObject over its host socket):
 * opens streams towards targets the agent can reach, routes the agent's relay
 * messages and frames to them, and ends them all when the socket goes.
 *
 *   const s = mux.open({ kind: 'computer_tcp', port: 8080 }, { tags: { port: 8080 } });
 *   if (!s.ok) …;                          // no agent, or too many streams
 *   const reset = await s.value.accepted;   // null once the agent connected
 *
 * Then compose: readable.ts (bytes as a ReadableStream, a body into a
 * stream), http.ts (an HTTP exchange), websocket.ts (a client WebSocket).
 */
import { fail, ok, type Result } from '../../schema/errors.ts';
import {
  FRAME_RELAY,
  MAX_WINDOW,
  MIN_WINDOW,
  RelayAgentMessage,
  decodeRelayFrame,
  isRelayMessage,
  type RelayHttpRequest,
  type RelayServerMessage,
  type RelayTarget,
  type ResetCode,
} from '../../schema/relay.ts';
import { PROTOCOL, RELAY_MINOR, frameKind, speaks } from '../../schema/protocol.ts';
import { WindowBudget } from '../../schema/relay-window.ts';
import { RelayStream, type StreamLink, type StreamTags } from './relay-stream.ts';

/** Receive window per stream: the most one stream holds in the object's memory. */
export const DEFAULT_WINDOW = 1024 * 1024;
/**
 * How far the receive windows of a link's streams may grow beyond DEFAULT_WINDOW, all together: what a
 * long round trip to the agent needs for a few fast streams, and a bound on the object's memory however
 * many widen (schema/relay-window.ts).
 */
export const WINDOW_GROWTH_BUDGET = 32 * 1024 * 1024;
/** Open streams per link; past it new opens fail (a computer's ports are not a way to exhaust its object). */
export const MAX_STREAMS = 512;
/** An agent that neither accepts nor refuses a stream within this long has it reset. */
const OPEN_TIMEOUT_MS = 30_000;
/** Resets sent for streams the object no longer knows are remembered this many at a time, so a flood is answered once. */
const FORGOTTEN_MEMORY = 256;

/** The agent socket a mux sends on: the attached one, or none; and the protocol its agent said it speaks, when known. */
export interface RelayLink {
  socket(): WebSocket | null;
  protocol?(): { major: number; minor: number } | null;
}

export interface OpenOptions {
  tags?: StreamTags;
  /** The stream carries one HTTP exchange (or a WebSocket) the agent speaks to the target. */
  http?: RelayHttpRequest;
  window?: number;
  /**
   * The object's own traffic (its desktop daemon's lanes), not a user's: its
   * bytes are not activity for auto-stop. The requests that use such a stream
   * count on their own; the object looking at the desktop for an events
   * socket does not keep the computer awake.
   */
  quiet?: boolean;
}

export class RelayMux {
  private readonly streams = new Map<string, { stream: RelayStream; ws: WebSocket }>();
  private readonly forgotten: string[] = [];
  private readonly prefix = Math.random().toString(36).slice(2, 6).padEnd(4, '0');
  private readonly budget = new WindowBudget(WINDOW_GROWTH_BUDGET);
  private seq = 0;
  private readonly link: RelayLink;
  private readonly onActivity: () => void;

  constructor(link: RelayLink, onActivity: () => void = () => {}) {
    this.link = link;
    this.onActivity = onActivity;
  }

  get size(): number {
    return this.streams.size;
  }

  /** Opens a stream; fails when no agent is attached or the link has too many streams. */
  open(target: RelayTarget, opts: OpenOptions = {}): Result<RelayStream> {
    const ws = this.link.socket();
    if (!ws) return fail('AGENT_UNAVAILABLE', 'the host agent is not connected; try again shortly');
    const v = this.link.protocol?.();
    if (v && !speaks(v, RELAY_MINOR)) return fail('AGENT_UNAVAILABLE', `the host agent speaks protocol ${v.major}.${v.minor}; relayed connections need ${PROTOCOL.major}.${RELAY_MINOR} (update the agent)`);
    if (this.streams.size >= MAX_STREAMS) return fail('RATE_LIMITED', `too many open connections (${MAX_STREAMS}); try again when some have closed`);
    const window = Math.min(MAX_WINDOW, Math.max(MIN_WINDOW, opts.window ?? DEFAULT_WINDOW));
    // The prefix tells this instance's streams from those of an earlier one the agent may still report.
    const id = `${this.prefix}${(++this.seq).toString(36)}`;
    const stream = new RelayStream(id, target, opts.tags ?? {}, window, this.streamLink(ws, opts.quiet ?? false));
    this.streams.set(id, { stream, ws });
    if (!send(ws, { type: 'relay.open', stream_id: id, target, window, widen: true, ...(opts.http ? { http: opts.http } : {}) })) {
      stream.onLinkLost('the agent connection closed');
      return ok(stream);
    }
    const timer = setTimeout(() => stream.reset('timeout', `the agent did not open the connection within ${OPEN_TIMEOUT_MS / 1000} s`), OPEN_TIMEOUT_MS);
    void stream.accepted.then(() => clearTimeout(timer));
    return ok(stream);
  }

  /** Streams whose tags match, e.g. every connection of a port or of a credential. */
  find(match: (tags: StreamTags) => boolean): RelayStream[] {
    return [...this.streams.values()].map((e) => e.stream).filter((s) => match(s.tags));
  }

  /** Resets the matching streams; returns how many. */
  resetWhere(match: (tags: StreamTags) => boolean, code: ResetCode, message: string): number {
    const hit = this.find(match);
    for (const s of hit) s.reset(code, message);
    return hit.length;
  }

  /** Resets every stream (the computer stopped, the object forgets it). */
  resetAll(code: ResetCode, message: string): void {
    this.resetWhere(() => true, code, message);
  }

  /** A parsed JSON message from `ws`: handled (true) when it is the relay's. */
  onJson(ws: WebSocket, raw: unknown): boolean {
    if (!isRelayMessage(raw)) return false;
    const parsed = RelayAgentMessage.safeParse(raw);
    if (!parsed.success) {
      const id = (raw as { stream_id?: unknown }).stream_id;
      const entry = typeof id === 'string' ? this.streams.get(id) : undefined;
      if (entry?.ws === ws) entry.stream.reset('protocol', `the agent sent a malformed ${(raw as { type: string }).type}`);
      return true;
    }
    const msg = parsed.data;
    const entry = this.streams.get(msg.stream_id);
    if (!entry || entry.ws !== ws) {
      if (msg.type !== 'relay.reset') this.refuseUnknown(ws, msg.stream_id);
      return true;
    }
    const s = entry.stream;
    switch (msg.type) {
      case 'relay.accept':
        s.onAccept(msg.window, msg.widen === true);
        break;
      case 'relay.response':
        s.onResponse(msg);
        break;
      case 'relay.credit':
        s.onCredit(msg.offset, msg.window);
        break;
      case 'relay.close':
        s.onClose(msg.offset, msg.ws);
        break;
      case 'relay.reset':
        s.onReset(msg.code, msg.message);
        break;
    }
    return true;
  }

  /** A binary message from `ws`: handled (true) when it is a relay frame. */
  onBinary(ws: WebSocket, data: ArrayBuffer): boolean {
    const bytes = new Uint8Array(data);
    if (frameKind(bytes) !== FRAME_RELAY) return false;
    const f = decodeRelayFrame(bytes);
    if (!f) {
      ws.close(4400, 'malformed relay frame');
      return true;
    }
    const entry = this.streams.get(f.stream_id);
    if (!entry || entry.ws !== ws) this.refuseUnknown(ws, f.stream_id);
    else entry.stream.onFrame(f.offset, f.flags, f.payload);
    return true;
  }

  /** The agent socket `ws` closed: every stream on it is gone. */
  linkGone(ws: WebSocket): void {
    for (const { stream, ws: on } of [...this.streams.values()]) {
      if (on === ws) stream.onLinkLost('the host agent disconnected; the connection was lost');
    }
  }

  private streamLink(ws: WebSocket, quiet: boolean): StreamLink {
    return {
      sendJson: (msg) => send(ws, msg),
      sendBinary: (bytes) => {
        try {
          ws.send(bytes);
          return true;
        } catch {
          return false;
        }
      },
      forget: (id) => this.streams.delete(id),
      activity: quiet ? () => {} : this.onActivity,
      widen: (by) => this.budget.take(by),
      release: (by) => this.budget.give(by),
    };
  }

  /** The agent speaks of a stream this object does not have (it restarted, or reset it): tell it once. */
  private refuseUnknown(ws: WebSocket, id: string): void {
    if (this.forgotten.includes(id)) return;
    this.forgotten.push(id);
    if (this.forgotten.length > FORGOTTEN_MEMORY) this.forgotten.shift();
    send(ws, { type: 'relay.reset', stream_id: id, code: 'closed', message: 'no such stream' });
  }
}

function send(ws: WebSocket, msg: RelayServerMessage): boolean {
  try {
    ws.send(JSON.stringify(msg));
    return true;
  } catch {
    return false;
  }
}
