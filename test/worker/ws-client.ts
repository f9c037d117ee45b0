/** A client WebSocket through the Worker (SELF.fetch with Upgrade), with its messages and close recorded for tests. */
import { vi } from 'vitest';
import { apiFetch } from './helpers.ts';
import { joinBytes } from '../../durable-objects/bytes.ts';

export interface Closed {
  code: number;
  reason: string;
}

export class ClientSocket {
  /** Every message received, in order: binary ones as bytes. */
  readonly messages: (Uint8Array | string)[] = [];
  readonly closed: Promise<Closed>;
  closedWith: Closed | null = null;

  constructor(
    readonly ws: WebSocket,
    readonly res: Response,
  ) {
    ws.accept();
    // With this compatibility date binary messages arrive as Blobs unless asked otherwise.
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('message', (ev) => {
      this.messages.push(typeof ev.data === 'string' ? ev.data : new Uint8Array(ev.data as ArrayBuffer));
    });
    this.closed = new Promise((resolve) => {
      ws.addEventListener('close', (ev) => {
        this.closedWith = { code: ev.code, reason: ev.reason };
        resolve(this.closedWith);
      });
    });
  }

  /** The subprotocol the server selected. */
  get protocol(): string | null {
    return this.res.headers.get('sec-websocket-protocol');
  }

  /** Binary messages only. */
  get frames(): Uint8Array[] {
    return this.messages.filter((m): m is Uint8Array => typeof m !== 'string');
  }

  /** All binary payloads joined (a terminal's byte stream). */
  bytes(): Uint8Array {
    return join(this.frames);
  }

  text(): string {
    return new TextDecoder().decode(this.bytes());
  }

  send(data: Uint8Array | string): void {
    this.ws.send(data);
  }

  close(code = 1000, reason = 'client closed'): void {
    this.ws.close(code, reason);
  }

  /** Waits until `check` passes (it throws or returns false until then). */
  async until(check: () => boolean | void, timeout = 4000): Promise<void> {
    await vi.waitFor(
      () => {
        if (check() === false) throw new Error('not yet');
      },
      { timeout, interval: 10 },
    );
  }

  /** Waits for the server to close the socket. */
  async waitClosed(timeout = 4000): Promise<Closed> {
    return Promise.race([this.closed, new Promise<Closed>((_, reject) => setTimeout(() => reject(new Error(`socket not closed within ${timeout} ms`)), timeout))]);
  }
}

/** Asks for an upgrade; the response is returned as is (an error envelope, or a 101 with its socket). */
export function upgrade(path: string, headers: Record<string, string> = {}, protocols: string[] = []): Promise<Response> {
  const h: Record<string, string> = { upgrade: 'websocket', ...headers };
  if (protocols.length) h['sec-websocket-protocol'] = protocols.join(', ');
  return apiFetch(path, { headers: h });
}

/** Upgrades and accepts the socket; fails with the response body when there is no 101. */
export async function connect(path: string, headers: Record<string, string> = {}, protocols: string[] = []): Promise<ClientSocket> {
  const res = await upgrade(path, headers, protocols);
  if (res.status !== 101 || !res.webSocket) throw new Error(`expected 101, got ${res.status}: ${await res.text()}`);
  return new ClientSocket(res.webSocket, res);
}

/** Byte chunks made one. */
export const join = joinBytes;

/** Deterministic pseudo-random bytes (crypto.getRandomValues takes at most 64 KiB at once). */
export function randomBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);
