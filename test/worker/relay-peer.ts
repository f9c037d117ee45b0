/**
 * The relay side of a scripted agent (agent-peer.ts): records the streams the
 * object opens and what it sends on them, checks it keeps to the protocol
 * (frames in order and within the credit this peer gave, a FIN at the right
 * offset), and lets a test play the target: accept, answer, send bytes,
 * credit, close, reset.
 */
import {
  RelayServerMessage,
  decodeRelayFrame,
  encodeRelayFrame,
  type RelayAgentMessage,
  type RelayOpen,
  type ResetCode,
} from '../../schema/relay.ts';

const WAIT_MS = 4000;

export interface PeerStream {
  open: RelayOpen;
  /** Bytes the object sent, in order (WebSocket message pieces with their flags). */
  frames: { flags: number; payload: Uint8Array }[];
  /** Our receive window, as accepted. */
  window: number;
  /** Our last credit. */
  credited: number;
  received: number;
  /** The object's FIN, with its WebSocket close if any. */
  closed: { ws?: { code: number; reason: string } } | null;
  reset: { code: ResetCode; message: string } | null;
  /** What we sent: offset of our next byte, and the object's last credit to us. */
  sent: number;
  peerCredit: number;
  credits: number[];
}

export class RelayPeer {
  readonly streams = new Map<string, PeerStream>();
  /** Resets for streams this peer never saw (the object answering stale ids). */
  readonly strayResets: { stream_id: string; code: ResetCode }[] = [];
  /** Called with every stream the object opens, as it opens it (a scripted app answers here). */
  onOpen: ((s: PeerStream) => void) | null = null;
  /** Called whenever anything arrives on a stream. */
  onActivity: ((s: PeerStream) => void) | null = null;
  private readonly waiters: Array<() => void> = [];

  constructor(
    private readonly sendText: (s: string) => void,
    private readonly sendBytes: (b: Uint8Array) => void,
  ) {}

  /** A JSON relay message from the object; a problem is returned as a protocol violation. */
  onMessage(raw: unknown): string | null {
    const parsed = RelayServerMessage.safeParse(raw);
    if (!parsed.success) return `malformed relay message ${JSON.stringify(raw)}: ${parsed.error.message}`;
    const msg = parsed.data;
    if (msg.type === 'relay.open') {
      if (this.streams.has(msg.stream_id)) return `stream id ${msg.stream_id} opened twice`;
      const s: PeerStream = { open: msg, frames: [], window: 0, credited: 0, received: 0, closed: null, reset: null, sent: 0, peerCredit: 0, credits: [] };
      this.streams.set(msg.stream_id, s);
      this.onOpen?.(s);
    } else {
      const s = this.streams.get(msg.stream_id);
      if (!s) {
        if (msg.type === 'relay.reset') this.strayResets.push({ stream_id: msg.stream_id, code: msg.code });
        else return `${msg.type} for unknown stream ${msg.stream_id}`;
      } else if (msg.type === 'relay.credit') {
        if (msg.offset < s.peerCredit || msg.offset > s.sent) return `credit ${msg.offset} out of range (sent ${s.sent})`;
        s.peerCredit = msg.offset;
        s.credits.push(msg.offset);
      } else if (msg.type === 'relay.close') {
        if (msg.offset !== s.received) return `close at ${msg.offset} after ${s.received} bytes`;
        s.closed = { ws: msg.ws };
      } else s.reset = { code: msg.code, message: msg.message };
      if (s) this.onActivity?.(s);
    }
    this.wake();
    return null;
  }

  onFrame(bytes: Uint8Array): string | null {
    const f = decodeRelayFrame(bytes);
    if (!f) return `malformed relay frame (${bytes.byteLength} bytes)`;
    const s = this.streams.get(f.stream_id);
    if (!s) return `relay frame for unknown stream ${f.stream_id}`;
    if (s.closed) return `relay frame after the close of ${f.stream_id}`;
    if (f.offset !== s.received) return `relay frame at ${f.offset}, expected ${s.received}`;
    if (s.window === 0) return `relay frame before the accept of ${f.stream_id}`;
    if (s.received + f.payload.byteLength > s.credited + s.window) return `relay frame beyond the credit of ${f.stream_id}`;
    s.received += f.payload.byteLength;
    s.frames.push({ flags: f.flags, payload: f.payload.slice() });
    this.onActivity?.(s);
    this.wake();
    return null;
  }

  /** The next stream the object opens (or the first not yet taken). */
  async nextOpen(taken = new Set<string>()): Promise<PeerStream> {
    return this.until(() => [...this.streams.values()].find((s) => !taken.has(s.open.stream_id)) ?? null, 'a relay.open');
  }

  /** Waits until `pick` returns something. */
  async until<T>(pick: () => T | null | undefined | false, what: string, ms = WAIT_MS): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = pick();
      if (v) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`relay peer: no ${what} within ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  accept(s: PeerStream, window = 256 * 1024): void {
    s.window = window;
    this.send({ type: 'relay.accept', stream_id: s.open.stream_id, window });
  }

  respond(s: PeerStream, status: number, headers: [string, string][] = []): void {
    this.send({ type: 'relay.response', stream_id: s.open.stream_id, status, headers });
  }

  /** Sends bytes as one frame at our next offset; the test keeps within the object's window. */
  data(s: PeerStream, payload: Uint8Array | string, flags = 0): void {
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    this.sendBytes(encodeRelayFrame({ stream_id: s.open.stream_id, flags, offset: s.sent, payload: bytes }));
    s.sent += bytes.byteLength;
  }

  /** Credits everything received so far. */
  credit(s: PeerStream): void {
    s.credited = s.received;
    this.send({ type: 'relay.credit', stream_id: s.open.stream_id, offset: s.received });
  }

  close(s: PeerStream, ws?: { code: number; reason: string }): void {
    this.send({ type: 'relay.close', stream_id: s.open.stream_id, offset: s.sent, ...(ws ? { ws } : {}) });
  }

  reset(s: PeerStream | string, code: ResetCode, message = 'scripted reset'): void {
    this.send({ type: 'relay.reset', stream_id: typeof s === 'string' ? s : s.open.stream_id, code, message });
  }

  /** Everything the object sent on a stream, joined. */
  bytesOf(s: PeerStream): Uint8Array {
    const out = new Uint8Array(s.frames.reduce((n, f) => n + f.payload.byteLength, 0));
    let at = 0;
    for (const f of s.frames) {
      out.set(f.payload, at);
      at += f.payload.byteLength;
    }
    return out;
  }

  send(msg: RelayAgentMessage): void {
    this.sendText(JSON.stringify(msg));
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
