/**
 * The opening of an RFB (VNC) connection, spoken by the ComputerObject on
 * both sides when a native VNC client logs in with the viewer password:
 *
 *   client ──RFB, "VNC Authentication"──▶ object ──RFB, security "None"──▶ Xvnc
 *
 * Towards the client the object is the server: it offers VNC authentication
 * and checks the answer against the viewer password (which therefore never
 * enters the computer). Towards Xvnc, which listens only inside the computer
 * without a password, it is the client and picks "None". Once both sides are
 * through, the object tells the client "OK" and only relays bytes: the client's
 * ClientInit goes to Xvnc, Xvnc's ServerInit comes back, as if they had met.
 * Pure byte logic; vnc-password-bridge.ts gives it its sockets.
 */

const enc = new TextEncoder();
export const RFB_38 = enc.encode('RFB 003.008\n');
const SEC_NONE = 1;
const SEC_VNC_AUTH = 2;
const MAX_REASON = 1024;

/** Bytes arriving in pieces, read by exact counts. */
class Bytes {
  private buf = new Uint8Array(0);
  push(b: Uint8Array): void {
    const next = new Uint8Array(this.buf.byteLength + b.byteLength);
    next.set(this.buf);
    next.set(b, this.buf.byteLength);
    this.buf = next;
  }
  take(n: number): Uint8Array | null {
    if (this.buf.byteLength < n) return null;
    const out = this.buf.slice(0, n);
    this.buf = this.buf.slice(n);
    return out;
  }
  peek(n: number): Uint8Array | null {
    return this.buf.byteLength < n ? null : this.buf.subarray(0, n);
  }
  rest(): Uint8Array {
    const out = this.buf;
    this.buf = new Uint8Array(0);
    return out;
  }
}

const u32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
};

/** What one step of a handshake asks for. */
export interface Step {
  /** Bytes to send to the other party. */
  send?: Uint8Array;
  /** The handshake is over: through (`ok`) or refused (`failed`, with why). */
  outcome?: { ok: true; rest: Uint8Array } | { ok: false; reason: string };
}

/** The client side of the viewer's connection: we are its VNC server asking for a password. */
export class PasswordServerHandshake {
  private readonly input = new Bytes();
  private minor = 8;
  private stage: 'version' | 'choice' | 'response' | 'done' = 'version';

  private readonly challenge: Uint8Array;
  private readonly check: (response: Uint8Array) => boolean;

  constructor(challenge: Uint8Array, check: (response: Uint8Array) => boolean) {
    this.challenge = challenge;
    this.check = check;
  }

  /** What the server says first. */
  greeting(): Uint8Array {
    return RFB_38;
  }

  feed(bytes: Uint8Array): Step {
    this.input.push(bytes);
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.stage === 'version') {
        const v = this.input.take(12);
        if (!v) break;
        const m = /^RFB (\d{3})\.(\d{3})\n$/.exec(new TextDecoder().decode(v));
        if (!m || Number(m[1]) !== 3 || Number(m[2]) < 3) return { outcome: { ok: false, reason: 'not a VNC client' } };
        const minor = Number(m[2]);
        // 3.3, 3.7 and 3.8 are the versions there are; anything newer (Apple's 3.889) speaks 3.8.
        this.minor = minor >= 8 ? 8 : minor >= 7 ? 7 : 3;
        if (this.minor === 3) {
          out.push(u32(SEC_VNC_AUTH), this.challenge);
          this.stage = 'response';
        } else {
          out.push(Uint8Array.of(1, SEC_VNC_AUTH));
          this.stage = 'choice';
        }
      } else if (this.stage === 'choice') {
        const c = this.input.take(1);
        if (!c) break;
        if (c[0] !== SEC_VNC_AUTH) return this.refuse(out, 'this server only offers VNC authentication');
        out.push(this.challenge);
        this.stage = 'response';
      } else if (this.stage === 'response') {
        const r = this.input.take(16);
        if (!r) break;
        this.stage = 'done';
        if (!this.check(r)) return this.refuse(out, 'wrong viewer password');
        // The "OK" is sent once Xvnc has let us in (see okResult); the client's next bytes wait in `rest`.
        return { send: concat(...out), outcome: { ok: true, rest: this.input.rest() } };
      } else break;
    }
    return out.length ? { send: concat(...out) } : {};
  }

  /** SecurityResult "OK", sent when the way to Xvnc is open. */
  okResult(): Uint8Array {
    return u32(0);
  }

  /** SecurityResult "failed" (with a reason from 3.8 on), for the client before it is hung up. */
  failure(reason: string): Uint8Array {
    const text = enc.encode(reason.slice(0, MAX_REASON));
    return this.minor >= 8 ? concat(u32(1), u32(text.byteLength), text) : u32(1);
  }

  private refuse(out: Uint8Array[], reason: string): Step {
    this.stage = 'done';
    out.push(this.failure(reason));
    return { send: concat(...out), outcome: { ok: false, reason } };
  }
}

/** The server side: we are a VNC client of Xvnc, choosing security type None. */
export class NoneClientHandshake {
  private readonly input = new Bytes();
  private stage: 'version' | 'types' | 'result' | 'done' = 'version';

  feed(bytes: Uint8Array): Step {
    this.input.push(bytes);
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.stage === 'version') {
        const v = this.input.take(12);
        if (!v) break;
        if (!/^RFB 003\.(00[78]|[0-9]{3})\n$/.test(new TextDecoder().decode(v))) return { outcome: { ok: false, reason: 'the desktop did not answer as a VNC server' } };
        out.push(RFB_38);
        this.stage = 'types';
      } else if (this.stage === 'types') {
        const n = this.input.peek(1);
        if (!n) break;
        if (n[0] === 0) return { outcome: { ok: false, reason: 'the desktop refused the connection' } };
        const list = this.input.take(1 + n[0]);
        if (!list) break;
        if (!list.subarray(1).includes(SEC_NONE)) return { outcome: { ok: false, reason: "the desktop's VNC server asks for a password of its own" } };
        out.push(Uint8Array.of(SEC_NONE));
        this.stage = 'result';
      } else if (this.stage === 'result') {
        const r = this.input.take(4);
        if (!r) break;
        this.stage = 'done';
        if (new DataView(r.buffer, r.byteOffset).getUint32(0) !== 0) return { outcome: { ok: false, reason: 'the desktop refused the connection' } };
        return { send: out.length ? concat(...out) : undefined, outcome: { ok: true, rest: this.input.rest() } };
      } else break;
    }
    return out.length ? { send: concat(...out) } : {};
  }
}
