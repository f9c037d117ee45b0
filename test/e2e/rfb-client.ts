/**
 * A minimal VNC (RFB 3.8) client for tests, over a WebSocket (binary messages
 * are the bytes, as websockify and the API carry them) or a TCP socket: the
 * handshake with security None or VNC authentication, ServerInit, and raw
 * framebuffer updates of a rectangle — enough to prove a real VNC session
 * works end to end, and to read pixels back.
 */
import net from 'node:net';
import WebSocket from 'ws';
import { vncAuthResponse } from '../../durable-objects/desktop/vnc-auth.ts';

export interface ServerInit {
  width: number;
  height: number;
  name: string;
}

export class RfbError extends Error {}

/** Bytes from either transport, read by exact counts. */
class ByteQueue {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private ended: Error | null = null;

  push(b: Buffer): void {
    this.buf = Buffer.concat([this.buf, b]);
    this.waiter?.();
  }

  end(why: Error): void {
    this.ended = why;
    this.waiter?.();
  }

  async read(n: number, timeoutMs = 30_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw this.ended;
      const left = deadline - Date.now();
      if (left <= 0) throw new RfbError(`timed out waiting for ${n} bytes`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = null;
          r();
        };
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
}

export class RfbClient {
  private readonly q = new ByteQueue();
  private send: (b: Buffer) => void = () => {};
  private closer: () => void = () => {};
  /** Resolves when the connection ends, with the WebSocket close code when there was one. */
  readonly closed: Promise<number | null>;
  private settleClosed!: (code: number | null) => void;
  init: ServerInit | null = null;

  private constructor() {
    this.closed = new Promise((r) => (this.settleClosed = r));
  }

  /** Opens a WebSocket; `host` overrides the Host header (for computer hosts that only browsers resolve). */
  static async overWebSocket(url: string, opts: { host?: string } = {}): Promise<RfbClient> {
    const c = new RfbClient();
    const ws = new WebSocket(url, { headers: opts.host ? { host: opts.host } : {} });
    ws.binaryType = 'nodebuffer';
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new RfbError(`WebSocket refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
    ws.on('message', (data: Buffer) => c.q.push(data));
    ws.on('close', (code) => {
      c.q.end(new RfbError(`connection closed (${code})`));
      c.settleClosed(code);
    });
    c.send = (b) => ws.send(b);
    c.closer = () => ws.close();
    return c;
  }

  static async overTcp(port: number, host = '127.0.0.1'): Promise<RfbClient> {
    const c = new RfbClient();
    const sock = net.connect(port, host);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    sock.on('data', (d) => c.q.push(d));
    sock.on('close', () => {
      c.q.end(new RfbError('connection closed'));
      c.settleClosed(null);
    });
    sock.on('error', () => undefined);
    c.send = (b) => sock.write(b);
    c.closer = () => sock.destroy();
    return c;
  }

  /** RFB 3.8 up to ServerInit: security None, or VNC authentication when a password is given. Throws RfbError with the server's reason. */
  async handshake(password?: string): Promise<ServerInit> {
    const version = (await this.q.read(12)).toString('latin1');
    if (!/^RFB 003\.\d{3}\n$/.test(version)) throw new RfbError(`not an RFB server: ${JSON.stringify(version)}`);
    this.send(Buffer.from('RFB 003.008\n'));
    const n = (await this.q.read(1))[0];
    if (n === 0) throw new RfbError(await this.reason());
    const types = [...(await this.q.read(n))];
    const type = password !== undefined && types.includes(2) ? 2 : types.includes(1) ? 1 : types[0];
    this.send(Buffer.from([type]));
    if (type === 2) {
      const challenge = await this.q.read(16);
      this.send(Buffer.from(vncAuthResponse(password ?? '', challenge)));
    } else if (type !== 1) {
      throw new RfbError(`server offers security types ${types.join(',')}, none of which this client speaks`);
    }
    if ((await this.q.read(4)).readUInt32BE(0) !== 0) throw new RfbError(await this.reason());
    this.send(Buffer.from([1])); // ClientInit: shared
    const head = await this.q.read(24);
    const nameLen = head.readUInt32BE(20);
    const name = (await this.q.read(nameLen)).toString('utf8');
    this.init = { width: head.readUInt16BE(0), height: head.readUInt16BE(2), name };
    // Raw pixels, 32 bits little-endian true colour (blue in the low byte), so reads need no decoder.
    const format = Buffer.alloc(20);
    format[0] = 0;
    format.set([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0], 4);
    this.send(format);
    const encodings = Buffer.alloc(8);
    encodings.writeUInt16BE(1, 2);
    encodings.writeInt32BE(0, 4);
    this.send(Buffer.concat([Buffer.from([2, 0]), encodings.subarray(2)]));
    return this.init;
  }

  /** A key event (keysym as X names them), as a viewer's keyboard sends it. */
  key(keysym: number, down: boolean): void {
    const msg = Buffer.alloc(8);
    msg[0] = 4;
    msg[1] = down ? 1 : 0;
    msg.writeUInt32BE(keysym, 4);
    this.send(msg);
  }

  /** Presses and releases the key of each character (Latin-1 keysyms are the code point, others Unicode keysyms; \n is Return). */
  typeText(text: string): void {
    for (const ch of text) {
      const cp = ch.codePointAt(0)!;
      const sym = ch === '\n' ? 0xff0d : (cp >= 0x20 && cp <= 0x7e) || (cp >= 0xa0 && cp <= 0xff) ? cp : 0x01000000 + cp;
      this.key(sym, true);
      this.key(sym, false);
    }
  }

  /** Asks for an update of a rectangle: everything in it (full), or only what changes from now on (incremental). */
  requestUpdate(x: number, y: number, w: number, h: number, incremental: boolean): void {
    const req = Buffer.alloc(10);
    req[0] = 3;
    req[1] = incremental ? 1 : 0;
    req.writeUInt16BE(x, 2);
    req.writeUInt16BE(y, 4);
    req.writeUInt16BE(w, 6);
    req.writeUInt16BE(h, 8);
    this.send(req);
  }

  /** The next framebuffer update (raw rectangles), skipping bells and clipboard messages. */
  async nextUpdate(timeoutMs = 30_000): Promise<Array<{ x: number; y: number; w: number; h: number; pixels: Buffer }>> {
    for (;;) {
      const type = (await this.q.read(1, timeoutMs))[0];
      if (type === 2) continue; // bell
      if (type === 3) {
        await this.q.read(3);
        await this.q.read((await this.q.read(4)).readUInt32BE(0)); // server cut text
        continue;
      }
      if (type !== 0) throw new RfbError(`unexpected server message ${type}`);
      const count = (await this.q.read(3)).readUInt16BE(1);
      const rects = [];
      for (let i = 0; i < count; i++) {
        const r = await this.q.read(12);
        const [x, y, w, h, enc] = [r.readUInt16BE(0), r.readUInt16BE(2), r.readUInt16BE(4), r.readUInt16BE(6), r.readInt32BE(8)];
        if (enc !== 0) throw new RfbError(`server sent encoding ${enc} though only raw was asked for`);
        rects.push({ x, y, w, h, pixels: await this.q.read(w * h * 4) });
      }
      return rects;
    }
  }

  /** The [r, g, b] pixels of a rectangle, from a full (non-incremental) update. */
  async rect(x: number, y: number, w: number, h: number): Promise<Uint8Array> {
    this.requestUpdate(x, y, w, h, false);
    const out = new Uint8Array(w * h * 3);
    for (const r of await this.nextUpdate()) {
      for (let yy = 0; yy < r.h; yy++) {
        for (let xx = 0; xx < r.w; xx++) {
          const tx = r.x + xx - x;
          const ty = r.y + yy - y;
          if (tx < 0 || ty < 0 || tx >= w || ty >= h) continue;
          const s = (yy * r.w + xx) * 4;
          const d = (ty * w + tx) * 3;
          out[d] = r.pixels[s + 2];
          out[d + 1] = r.pixels[s + 1];
          out[d + 2] = r.pixels[s];
        }
      }
    }
    return out;
  }

  private async reason(): Promise<string> {
    const len = (await this.q.read(4)).readUInt32BE(0);
    return (await this.q.read(len)).toString('utf8');
  }

  close(): void {
    this.closer();
  }
}
