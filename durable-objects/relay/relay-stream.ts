/**
 * One relayed stream as its Durable Object sees it: bytes to the agent under
 * the agent's credit, bytes from the agent handed to a sink and credited as
 * the sink takes them, FIN per direction and RST for both (schema/relay.ts).
 * Nothing here is stored: a stream lives as long as the agent socket and the
 * object's memory, like the TCP connection it stands for.
 */
import {
  FLAG_STARVED,
  RELAY_FRAME_BYTES,
  encodeRelayFrame,
  type RelayResponse,
  type RelayServerMessage,
  type RelayTarget,
  type ResetCode,
} from '../../schema/relay.ts';
import { ReceiveWindow, starvedFlag } from '../../schema/relay-window.ts';

/** How a stream ended abruptly: a reset from either side, or one it was opened into. */
export interface StreamReset {
  code: ResetCode;
  message: string;
  /** True when the agent sent it (the target side ended the connection). */
  remote: boolean;
}

/** A WebSocket close code and reason carried with a FIN. */
export interface WsClose {
  code: number;
  reason: string;
}

/** Where the bytes from the agent go. */
export interface StreamSink {
  /** Bytes (or a piece of a WebSocket message, see `flags`) arrived; call `stream.consumed(n)` once they are taken. */
  data(payload: Uint8Array, flags: number): void;
  /** The agent's direction is closed (FIN): nothing more will arrive. */
  end(ws?: WsClose): void;
}

/** What the object remembers of a stream, to find it again: e.g. the port it serves, the credential that opened it. */
export interface StreamTags {
  /** The API key that authorized the connection (null for JWTs, operators or public access). */
  credential_id?: string | null;
  /** A port of the computer, or a tunnel id: whatever the owner closes streams by. */
  port?: number;
  tunnel_id?: string;
  /** What opened it, for logs: "http", "websocket", "tcp"… */
  kind?: string;
}

/** What a stream needs of its mux: a way to the agent and a way out of the table. */
export interface StreamLink {
  sendJson(msg: RelayServerMessage): boolean;
  sendBinary(bytes: Uint8Array): boolean;
  forget(id: string): void;
  activity(): void;
  /** Asks for `by` more bytes of receive window (the link's budget); `release` gives them back. */
  widen(by: number): boolean;
  release(by: number): void;
}

export class RelayStream {
  readonly id: string;
  readonly target: RelayTarget;
  readonly tags: StreamTags;

  /** Settles when the agent accepted (null) or the stream was reset before it did. */
  readonly accepted: Promise<StreamReset | null>;
  /** The target's response head for http streams; null when the stream was reset first. */
  readonly response: Promise<RelayResponse | null>;
  /** Settles when the stream is over: null after a FIN each way, the reset otherwise. */
  readonly done: Promise<StreamReset | null>;

  private readonly link: StreamLink;
  private settleAccepted!: (r: StreamReset | null) => void;
  private settleResponse!: (r: RelayResponse | null) => void;
  private settleDone!: (r: StreamReset | null) => void;
  private isAccepted = false;
  private resetWith: StreamReset | null = null;

  // Object -> agent.
  private sent = 0;
  private peerCredit = 0;
  private peerWindow = 0;
  /** The agent understands FLAG_STARVED (and may widen its window on it). */
  private peerWidens = false;
  private writeClosed = false;
  private waiters: Array<() => void> = [];
  private writeChain: Promise<boolean> = Promise.resolve(true);

  // Agent -> object: what the agent may send, and when we credit it.
  private readonly rx: ReceiveWindow;
  private readClosed = false;
  private sink: StreamSink | null = null;
  /** What arrived before a sink was attached (at most a window). */
  private early: Array<{ payload: Uint8Array; flags: number } | { end: WsClose | undefined }> = [];

  constructor(id: string, target: RelayTarget, tags: StreamTags, window: number, link: StreamLink) {
    this.id = id;
    this.target = target;
    this.tags = tags;
    this.link = link;
    this.rx = new ReceiveWindow(window, (by) => link.widen(by));
    this.accepted = new Promise((r) => (this.settleAccepted = r));
    this.response = new Promise((r) => (this.settleResponse = r));
    this.done = new Promise((r) => (this.settleDone = r));
  }

  get isOpen(): boolean {
    return this.resetWith === null && !(this.writeClosed && this.readClosed);
  }

  /** The reset that ended the stream, if one did. */
  get failure(): StreamReset | null {
    return this.resetWith;
  }

  /** Attaches where the agent's bytes go; whatever came before is delivered at once. */
  attach(sink: StreamSink): void {
    this.sink = sink;
    for (const e of this.early.splice(0)) {
      if ('end' in e) sink.end(e.end);
      else sink.data(e.payload, e.flags);
    }
  }

  /**
   * Sends bytes (one WebSocket message piece when `flags` say so), in frames,
   * each waiting for the agent's credit. Resolves true once handed to the
   * socket, false when the stream was reset meanwhile. Writes keep their order.
   */
  write(bytes: Uint8Array, flags = 0): Promise<boolean> {
    const next = this.writeChain.then((ok) => (ok ? this.sendFrames(bytes, flags) : false));
    this.writeChain = next;
    return next;
  }

  /** FIN: no more bytes from this side (after those already written). */
  closeWrite(ws?: WsClose): void {
    void this.writeChain.then((ok) => {
      if (!ok || this.writeClosed || this.resetWith) return;
      this.writeClosed = true;
      this.link.sendJson({ type: 'relay.close', stream_id: this.id, offset: this.sent, ...(ws ? { ws } : {}) });
      this.maybeDone();
    });
  }

  /** RST: ends both directions now and tells the agent. */
  reset(code: ResetCode, message: string): void {
    if (this.resetWith || (this.writeClosed && this.readClosed)) return;
    this.link.sendJson({ type: 'relay.reset', stream_id: this.id, code, message: message.slice(0, 1024) });
    this.fail({ code, message, remote: false });
  }

  /** Our receive window: the agent may be this far ahead of our last credit (it may grow, schema/relay-window.ts). */
  get window(): number {
    return this.rx.window;
  }

  /** The sink has taken `n` more bytes: credit the agent once a quarter window has been taken. */
  consumed(n: number): void {
    if (this.readClosed || this.resetWith) return;
    // A blocked agent has sent a whole window, so once it is taken a credit always goes out: no deadlock.
    const credit = this.rx.take(n);
    if (credit) this.link.sendJson({ type: 'relay.credit', stream_id: this.id, ...credit });
  }

  // ------------------------------------------------------------ from the mux

  onAccept(window: number, widens = false): void {
    if (this.isAccepted || this.resetWith) return this.violation('a second accept');
    this.isAccepted = true;
    this.peerWindow = window;
    this.peerWidens = widens;
    this.settleAccepted(null);
    this.wake();
  }

  onResponse(head: RelayResponse): void {
    if (!this.isAccepted) return this.violation('a response before the accept');
    this.settleResponse(head);
  }

  onCredit(offset: number, window?: number): void {
    if (!this.isAccepted || offset < this.peerCredit || offset > this.sent) return this.violation(`a credit up to ${offset} with ${this.sent} bytes sent`);
    this.peerCredit = offset;
    // A window only grows: a smaller one would take back credit already used.
    if (window !== undefined && window > this.peerWindow) this.peerWindow = window;
    this.wake();
  }

  onFrame(offset: number, flags: number, payload: Uint8Array): void {
    if (!this.isAccepted || this.readClosed) return this.violation('bytes after its close');
    const wrong = this.rx.arrive(offset, payload.byteLength, (flags & FLAG_STARVED) !== 0);
    if (wrong) return this.violation(wrong);
    this.link.activity();
    const f = flags & ~FLAG_STARVED;
    if (this.sink) this.sink.data(payload, f);
    else this.early.push({ payload, flags: f });
  }

  onClose(offset: number, ws?: WsClose): void {
    if (!this.isAccepted || this.readClosed) return this.violation('a second close');
    if (offset !== this.rx.received) return this.violation(`a close at ${offset} after ${this.rx.received} bytes`);
    this.readClosed = true;
    if (this.sink) this.sink.end(ws);
    else this.early.push({ end: ws });
    this.maybeDone();
  }

  onReset(code: ResetCode, message: string): void {
    this.fail({ code, message, remote: true });
  }

  /** The agent socket is gone; the connection is gone with it. */
  onLinkLost(message: string): void {
    this.fail({ code: 'unreachable', message, remote: false });
  }

  // ------------------------------------------------------------ internals

  private async sendFrames(bytes: Uint8Array, flags: number): Promise<boolean> {
    if (this.writeClosed) return false;
    if (bytes.byteLength === 0 && flags === 0) return true;
    let at = 0;
    do {
      if (!(await this.accepted.then(() => !this.resetWith))) return false;
      const room = this.peerCredit + this.peerWindow - this.sent;
      if (room <= 0) {
        await new Promise<void>((r) => this.waiters.push(r));
        continue;
      }
      const n = Math.min(room, RELAY_FRAME_BYTES, bytes.byteLength - at);
      const last = at + n >= bytes.byteLength;
      const payload = bytes.subarray(at, at + n);
      // Only the last piece of a message carries its end; its text flag rides on every piece.
      const f = (last ? flags : flags & ~1) | starvedFlag(room, n, this.peerWidens);
      if (!this.link.sendBinary(encodeRelayFrame({ stream_id: this.id, flags: f, offset: this.sent, payload }))) {
        this.onLinkLost('the agent connection closed');
        return false;
      }
      this.sent += n;
      at += n;
      this.link.activity();
    } while (at < bytes.byteLength);
    return !this.resetWith;
  }

  private violation(what: string): void {
    this.reset('protocol', `the agent sent ${what} on stream ${this.id}`);
  }

  private fail(r: StreamReset): void {
    if (this.resetWith || (this.writeClosed && this.readClosed)) return;
    this.resetWith = r;
    this.settleAccepted(r);
    this.settleResponse(null);
    this.settleDone(r);
    this.wake();
    this.early = [];
    this.end();
  }

  private maybeDone(): void {
    if (!this.writeClosed || !this.readClosed) return;
    this.settleResponse(null);
    this.settleDone(null);
    this.end();
  }

  private end(): void {
    this.link.release(this.rx.grown);
    this.link.forget(this.id);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
