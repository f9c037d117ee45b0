/**
 * File bodies reach the relay in frame-sized pieces (durable-objects/files/coalesce.ts):
 * workerd hands bodies over in 4 KiB chunks, which sent one by one moved files at a few MiB/s.
 */
import { describe, expect, it } from 'vitest';
import { coalesced } from '../../durable-objects/files/coalesce.ts';

const KiB = 1024;

function bodyOf(chunks: Uint8Array[], error?: Error): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (i < chunks.length) c.enqueue(chunks[i++]);
      else if (error) c.error(error);
      else c.close();
    },
  });
}

async function pieces(s: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const r = s.getReader();
  for (;;) {
    const { done, value } = await r.read();
    if (done) return out;
    out.push(value);
  }
}

/** Chunk i is filled with i, so order and content are checked together. */
const numbered = (n: number, size: number) => Array.from({ length: n }, (_, i) => new Uint8Array(size).fill(i & 0xff));
const joined = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.byteLength));
  return out;
};

const same = (a: Uint8Array, b: Uint8Array) => a.byteLength === b.byteLength && a.every((v, i) => v === b[i]);

describe('coalesced file bodies', () => {
  it('joins 4 KiB chunks into 256 KiB pieces, the rest in a last short piece, every byte in order', async () => {
    const chunks = numbered(64 * 3 + 5, 4 * KiB);
    const got = await pieces(coalesced(bodyOf(chunks)));
    expect(got.map((p) => p.byteLength)).toEqual([256 * KiB, 256 * KiB, 256 * KiB, 20 * KiB]);
    expect(same(joined(got), joined(chunks))).toBe(true);
  });

  it('passes a chunk as large as a piece as it is, and an empty body as no piece', async () => {
    const big = new Uint8Array(1024 * KiB).fill(7);
    const got = await pieces(coalesced(bodyOf([big, new Uint8Array(10)])));
    expect(got[0]).toBe(big);
    expect(got.map((p) => p.byteLength)).toEqual([1024 * KiB, 10]);
    expect(await pieces(coalesced(bodyOf([])))).toEqual([]);
  });

  it("errors with the body's error, and a cancel reaches the body", async () => {
    await expect(pieces(coalesced(bodyOf(numbered(3, 4 * KiB), new Error('the client went away'))))).rejects.toThrow('the client went away');
    let reason: unknown = null;
    const body = new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(new Uint8Array(KiB)), cancel: (r) => void (reason = r) });
    const r = coalesced(body).getReader();
    await r.read();
    await r.cancel('enough');
    expect(reason).toBe('enough');
  });
});
