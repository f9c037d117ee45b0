/**
 * One relayed stream on the agent's side (schema/relay.ts): bytes to the
 * object under the object's credit (the caller pauses its source when `write`
 * says so and resumes on `onDrain`), bytes from the object handed to the
 * bridge and credited once the bridge has passed them on, FIN per direction,
 * RST for both. Whatever the object sends before a bridge is attached (a FIN
 * racing the connect) waits here.
 */
import { FLAG_STARVED, RELAY_FRAME_BYTES, relayFrameParts, type RelayAgentMessage, type RelayResponse, type ResetCode } from '../../schema/relay.ts';
import { ReceiveWindow, starvedFlag } from '../../schema/relay-window.ts';

export interface WsClose {
  code: number;
  reason: string;
}

/** How the relay reaches the object; while the socket is down sends are dropped (streams die with the socket). */
export interface RelayOutlet {
  sendJson(msg: RelayAgentMessage): boolean;
  /** One binary message; several pieces are sent as the fragments of one message (ReconnectingSocket.sendBinary). */
  sendBinary(bytes: Uint8Array | readonly Uint8Array[]): boolean;
}

/** What a bridge does with what comes from the object. */
export interface StreamHandlers {
  /** Bytes; call `taken` once they are passed on (written to the target), which credits the object. */
  data(payload: Buffer, flags: number, taken: () => void): void;
  /** FIN from the object. */
  end(ws?: WsClose): void;
  /** RST from the object (or the connection to it is gone): drop everything. */
  reset(code: ResetCode, message: string): void;
}

export class AgentStream {
  readonly id: string;

  /** Called when the object's credit opens room again after `write` returned false. */
  onDrain: () => void = () => {};
  /** Called once the stream is over (both FINs, or a reset either way). */
  onDone: () => void = () => {};

  private readonly out: RelayOutlet;
  private handlers: StreamHandlers | null = null;
  private early: Array<{ payload: Buffer; flags: number } | { end: WsClose | undefined } | { reset: [ResetCode, string] }> = [];
  private over = false;

  // Agent -> object.
  private sent = 0;
  private peerCredit = 0;
  private peerWindow: number;
  /** The object understands FLAG_STARVED (it said `widen` in its open). */
  private readonly peerWidens: boolean;
  private queue: Array<{ bytes: Buffer; flags: number }> = [];
  private pendingEnd: { ws?: WsClose } | null = null;
  private writeClosed = false;

  // Object -> agent: what the object may send, and when we credit it.
  private readonly rx: ReceiveWindow;
  private readonly budget: { give(by: number): void } | null;
  private readClosed = false;

  /**
   * `peerWidens`: the object said `widen` in its open; `budget` grants our
   * window's growth (schema/relay-window.ts) and takes it back when the stream ends.
   */
  constructor(id: string, peerWindow: number, window: number, out: RelayOutlet, opts: { peerWidens?: boolean; budget?: { take(by: number): boolean; give(by: number): void } } = {}) {
    const { budget } = opts;
    this.id = id;
    this.peerWindow = peerWindow;
    this.peerWidens = opts.peerWidens === true;
    this.out = out;
    this.rx = new ReceiveWindow(window, (by) => budget?.take(by) ?? false);
    this.budget = budget ?? null;
  }

  /** Our receive window, announced in the accept (it may grow). */
  get window(): number {
    return this.rx.window;
  }

  get isOver(): boolean {
    return this.over;
  }

  /** The target is connected: tell the object, and take its bytes from now on. */
  accept(handlers: StreamHandlers): void {
    if (this.over) return;
    this.handlers = handlers;
    this.out.sendJson({ type: 'relay.accept', stream_id: this.id, window: this.window, widen: true });
    for (const e of this.early.splice(0)) {
      if ('reset' in e) handlers.reset(...e.reset);
      else if ('end' in e) handlers.end(e.end);
      else this.deliver(e.payload, e.flags);
    }
  }

  /** The target's response head (http and websocket streams). */
  respond(head: Omit<RelayResponse, 'type' | 'stream_id'>): void {
    if (!this.over) this.out.sendJson({ type: 'relay.response', stream_id: this.id, ...head });
  }

  /**
   * Sends bytes to the object (one message piece with `flags`). Returns false
   * when they wait for credit: pause the source until onDrain.
   */
  write(bytes: Buffer, flags = 0): boolean {
    if (this.over || this.writeClosed || this.pendingEnd) return false;
    this.queue.push({ bytes, flags });
    this.flush();
    return this.queue.length === 0;
  }

  /** FIN towards the object, after every queued byte. */
  end(ws?: WsClose): void {
    if (this.over || this.writeClosed || this.pendingEnd) return;
    this.pendingEnd = { ws };
    this.flush();
  }

  /** RST towards the object; the bridge's handlers are not called. */
  reset(code: ResetCode, message: string): void {
    if (this.over) return;
    this.out.sendJson({ type: 'relay.reset', stream_id: this.id, code, message: message.slice(0, 1024) });
    this.finish();
  }

  // ------------------------------------------------------------ from the object

  onFrame(offset: number, flags: number, payload: Buffer): void {
    if (this.over) return;
    const wrong = this.readClosed ? 'bytes after its close' : this.rx.arrive(offset, payload.length, (flags & FLAG_STARVED) !== 0);
    if (wrong) return this.violation(`the server sent ${wrong} on stream ${this.id}`);
    const f = flags & ~FLAG_STARVED;
    if (this.handlers) this.deliver(payload, f);
    else this.early.push({ payload, flags: f });
  }

  onCredit(offset: number, window?: number): void {
    if (this.over) return;
    if (offset < this.peerCredit || offset > this.sent) return this.violation(`the server credited up to ${offset} with ${this.sent} bytes sent`);
    this.peerCredit = offset;
    // A window only grows: a smaller one would take back credit already used.
    if (window !== undefined && window > this.peerWindow) this.peerWindow = window;
    const wasBlocked = this.queue.length > 0;
    this.flush();
    if (wasBlocked && this.queue.length === 0 && !this.over) this.onDrain();
  }

  onClose(offset: number, ws?: WsClose): void {
    if (this.over || this.readClosed) return;
    if (offset !== this.rx.received) return this.violation(`the server closed stream ${this.id} at ${offset} after ${this.rx.received} bytes`);
    this.readClosed = true;
    if (this.handlers) this.handlers.end(ws);
    else this.early.push({ end: ws });
    this.maybeDone();
  }

  onReset(code: ResetCode, message: string): void {
    if (this.over) return;
    const h = this.handlers;
    this.finish();
    if (h) h.reset(code, message);
    else this.early.push({ reset: [code, message] });
  }

  // ------------------------------------------------------------ internals

  /** The object broke the protocol: reset towards it, and the bridge drops its target. */
  private violation(message: string): void {
    const h = this.handlers;
    this.reset('protocol', message);
    h?.reset('protocol', message);
  }

  private deliver(payload: Buffer, flags: number): void {
    let done = false;
    this.handlers!.data(payload, flags, () => {
      if (done) return;
      done = true;
      this.credit(payload.length);
    });
  }

  private credit(n: number): void {
    if (this.over || this.readClosed) return;
    const credit = this.rx.take(n);
    if (credit) this.out.sendJson({ type: 'relay.credit', stream_id: this.id, ...credit });
  }

  private flush(): void {
    while (this.queue.length && !this.over) {
      const head = this.queue[0];
      const room = this.peerCredit + this.peerWindow - this.sent;
      if (room <= 0 && head.bytes.length > 0) return;
      const n = Math.min(Math.max(room, 0), RELAY_FRAME_BYTES, head.bytes.length);
      const last = n === head.bytes.length;
      const payload = head.bytes.subarray(0, n);
      const flags = (last ? head.flags : head.flags & ~1) | starvedFlag(room, n, this.peerWidens);
      if (!this.out.sendBinary(relayFrameParts({ stream_id: this.id, flags, offset: this.sent, payload }))) return this.finish();
      this.sent += n;
      if (last) this.queue.shift();
      else head.bytes = head.bytes.subarray(n);
    }
    if (this.queue.length === 0 && this.pendingEnd && !this.writeClosed && !this.over) {
      this.writeClosed = true;
      const { ws } = this.pendingEnd;
      this.out.sendJson({ type: 'relay.close', stream_id: this.id, offset: this.sent, ...(ws ? { ws } : {}) });
      this.maybeDone();
    }
  }

  private maybeDone(): void {
    if (this.writeClosed && this.readClosed) this.finish();
  }

  private finish(): void {
    if (this.over) return;
    this.over = true;
    this.budget?.give(this.rx.grown);
    this.queue = [];
    this.early = [];
    this.onDone();
  }
}
