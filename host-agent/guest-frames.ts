/**
 * Frame codec of the guest protocol (see schema/guest.ts):
 * u32 BE header_len | u32 BE payload_len | JSON header | raw payload.
 */
import { MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES } from '../schema/guest.ts';

export interface RawFrame {
  header: unknown;
  payload: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** A frame the guest would refuse: its header or payload passes the protocol's limits. */
export class FrameTooLarge extends Error {}

/** Encodes one frame as the buffers to write, in order (the payload is not copied); throws FrameTooLarge past the limits. */
export function encodeFrame(header: object, payload?: Uint8Array): Buffer[] {
  const h = Buffer.from(JSON.stringify(header));
  const plen = payload?.byteLength ?? 0;
  if (h.length > MAX_HEADER_BYTES) throw new FrameTooLarge(`its header is ${h.length} bytes (at most ${MAX_HEADER_BYTES})`);
  if (plen > MAX_PAYLOAD_BYTES) throw new FrameTooLarge(`its payload is ${plen} bytes (at most ${MAX_PAYLOAD_BYTES})`);
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
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;
  private need: { hlen: number; plen: number } | null = null;

  /** Feeds bytes; returns every frame they complete. Throws on a malformed stream. */
  push(chunk: Buffer): RawFrame[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const frames: RawFrame[] = [];
    for (;;) {
      if (!this.need) {
        if (this.size < 8) break;
        const prefix = this.take(8);
        const hlen = prefix.readUInt32BE(0);
        const plen = prefix.readUInt32BE(4);
        if (hlen === 0 || hlen > MAX_HEADER_BYTES || plen > MAX_PAYLOAD_BYTES) {
          throw new Error(`malformed guest frame (header ${hlen} bytes, payload ${plen} bytes)`);
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
        throw new Error(`malformed guest frame (its ${hlen}-byte header is not JSON)`);
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
