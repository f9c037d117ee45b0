/**
 * The length-prefixed frames of the guest protocol (schema/guest.ts) and of the
 * desktop daemon (schema/desktop.ts):
 * u32 BE header_len | u32 BE payload_len | JSON header | raw payload.
 * Used by the host agent (to its guests) and by the ComputerObject (to the
 * desktop daemon over a relayed stream); each passes its protocol's bounds.
 */
import { Buffer } from 'node:buffer';

export interface RawFrame {
  header: unknown;
  payload: Buffer;
}

/** The largest header and payload a protocol allows; a bigger frame is a protocol error. */
export interface FrameLimits {
  maxHeader: number;
  maxPayload: number;
}

const EMPTY = Buffer.alloc(0);

/** A frame the other end would refuse: its header or payload passes the protocol's limits. */
export class FrameTooLarge extends Error {}

/** Encodes one frame as the buffers to write, in order (the payload is not copied); throws FrameTooLarge past the limits. */
export function encodeFrame(limits: FrameLimits, header: object, payload?: Uint8Array): Buffer[] {
  const h = Buffer.from(JSON.stringify(header));
  const plen = payload?.byteLength ?? 0;
  if (h.length > limits.maxHeader) throw new FrameTooLarge(`its header is ${h.length} bytes (at most ${limits.maxHeader})`);
  if (plen > limits.maxPayload) throw new FrameTooLarge(`its payload is ${plen} bytes (at most ${limits.maxPayload})`);
  const prefix = Buffer.allocUnsafe(8);
  prefix.writeUInt32BE(h.length, 0);
  prefix.writeUInt32BE(plen, 4);
  if (!payload || plen === 0) return [Buffer.concat([prefix, h])];
  return [Buffer.concat([prefix, h]), Buffer.from(payload.buffer, payload.byteOffset, plen)];
}

/**
 * Incremental decoder. Chunks are kept in a list and joined once per frame, so
 * a large payload arriving in many small reads is copied once, not once per read.
 */
export class LengthPrefixedDecoder {
  private chunks: Buffer[] = [];
  private size = 0;
  private need: { hlen: number; plen: number } | null = null;
  private readonly limits: FrameLimits;

  constructor(limits: FrameLimits) {
    this.limits = limits;
  }

  /** Feeds bytes; returns every frame they complete. Throws on a malformed stream. */
  push(bytes: Uint8Array): RawFrame[] {
    const chunk = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.chunks.push(chunk);
    this.size += chunk.length;
    const frames: RawFrame[] = [];
    for (;;) {
      if (!this.need) {
        if (this.size < 8) break;
        const prefix = this.take(8);
        const hlen = prefix.readUInt32BE(0);
        const plen = prefix.readUInt32BE(4);
        if (hlen === 0 || hlen > this.limits.maxHeader || plen > this.limits.maxPayload) {
          throw new Error(`malformed frame (header ${hlen} bytes, payload ${plen} bytes)`);
        }
        this.need = { hlen, plen };
      }
      const { hlen, plen } = this.need;
      if (this.size < hlen + plen) break;
      const headerText = this.take(hlen).toString('utf8');
      const payload = plen ? this.take(plen) : EMPTY;
      this.need = null;
      let header: unknown;
      try {
        header = JSON.parse(headerText);
      } catch {
        throw new Error(`malformed frame (its ${hlen}-byte header is not JSON)`);
      }
      frames.push({ header, payload });
    }
    return frames;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.size -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.size -= n;
    return out;
  }
}
