/**
 * A viewer who logs in with the viewer password: a stream, seen from the
 * client's WebSocket bridge (relay/websocket.ts), that first plays the VNC
 * server asking for the password (rfb-handshake.ts) and, once the password
 * checks out, opens the real stream to Xvnc, gets through Xvnc's own opening
 * as a client, and from then on passes bytes both ways. A wrong password is
 * answered in RFB ("wrong viewer password") and the connection ends; Xvnc is
 * never reached.
 */
import type { ResetCode } from '../../schema/relay.ts';
import type { RelayStream, StreamReset, StreamSink } from '../relay/relay-stream.ts';
import { NoneClientHandshake, PasswordServerHandshake } from './rfb-handshake.ts';

export interface GateOptions {
  challenge: Uint8Array;
  /** Whether the client's answer to the challenge is right (counts failures on its own). */
  check(response: Uint8Array): boolean;
  /** The stream to Xvnc, or why there is none. */
  connect(): Promise<RelayStream | string>;
}

export class PasswordGate {
  readonly done: Promise<StreamReset | null>;
  private settle!: (r: StreamReset | null) => void;
  private sink: StreamSink | null = null;
  private readonly server: PasswordServerHandshake;
  private upstream: RelayStream | null = null;
  private phase: 'password' | 'connecting' | 'open' | 'over' = 'password';
  /** Client bytes that came after its answer, kept until Xvnc is reached. */
  private held: Uint8Array[] = [];

  private readonly opts: GateOptions;

  constructor(opts: GateOptions) {
    this.opts = opts;
    this.done = new Promise((r) => (this.settle = r));
    this.server = new PasswordServerHandshake(opts.challenge, opts.check);
  }

  get isOpen(): boolean {
    return this.phase !== 'over';
  }

  attach(sink: StreamSink): void {
    this.sink = sink;
    sink.data(this.server.greeting(), 0);
  }

  /** The bridge credits what it took; upstream bytes are credited as they pass (see toClient). */
  consumed(_n: number): void {}

  async write(bytes: Uint8Array): Promise<boolean> {
    if (this.phase === 'open') return this.upstream!.write(bytes);
    if (this.phase === 'connecting') {
      this.held.push(bytes);
      return true;
    }
    if (this.phase === 'over') return false;
    const step = this.server.feed(bytes);
    if (step.send) this.toClient(step.send);
    if (!step.outcome) return true;
    if (!step.outcome.ok) {
      this.end(null);
      return false;
    }
    if (step.outcome.rest.byteLength) this.held.push(step.outcome.rest);
    this.phase = 'connecting';
    void this.open();
    return true;
  }

  closeWrite(): void {
    if (this.upstream) this.upstream.closeWrite();
    else this.end(null);
  }

  reset(code: ResetCode, message: string): void {
    this.upstream?.reset(code, message);
    this.end({ code, message, remote: false });
  }

  // ------------------------------------------------------------ internals

  private async open(): Promise<void> {
    const up = await this.opts.connect();
    if (this.phase === 'over') {
      if (typeof up !== 'string') up.reset('closed', 'the viewer went away');
      return;
    }
    if (typeof up === 'string') return this.refuse(up);
    this.upstream = up;
    const client = new NoneClientHandshake();
    up.attach({
      data: (payload) => {
        if (this.phase === 'open') return this.toClient(payload, up);
        up.consumed(payload.byteLength);
        const step = client.feed(payload);
        if (step.send) void up.write(step.send);
        if (!step.outcome) return;
        if (!step.outcome.ok) return this.refuse(step.outcome.reason);
        // Both openings are through: the client hears "OK", and what each side sent early goes across.
        this.phase = 'open';
        this.toClient(this.server.okResult());
        if (step.outcome.rest.byteLength) this.toClient(step.outcome.rest);
        for (const b of this.held.splice(0)) void up.write(b);
      },
      end: () => this.end(null),
    });
    void up.done.then((r) => this.end(r));
  }

  private refuse(reason: string): void {
    this.toClient(this.server.failure(reason));
    this.upstream?.reset('closed', reason);
    this.end(null);
  }

  private toClient(bytes: Uint8Array, from?: RelayStream): void {
    this.sink?.data(bytes, 0);
    from?.consumed(bytes.byteLength);
  }

  private end(r: StreamReset | null): void {
    if (this.phase === 'over') return;
    this.phase = 'over';
    this.sink?.end();
    this.settle(r);
  }
}
