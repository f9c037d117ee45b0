/**
 * Output bytes decoded as UTF-8 across chunk boundaries: a sequence cut by a
 * chunk's end waits for the next chunk, invalid bytes become U+FFFD (never an
 * error). The state is the few bytes waiting, so it can be stored with a log
 * and an evicted object goes on mid-character.
 */
const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Length of the prefix of `b` that ends on a UTF-8 sequence boundary. */
function completePrefix(b: Uint8Array): number {
  const n = b.length;
  for (let back = 1; back <= Math.min(3, n); back++) {
    const c = b[n - back];
    if ((c & 0xc0) === 0x80) continue; // continuation byte: look further back
    const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

export class Utf8Chunks {
  private waiting: Uint8Array;

  constructor(tail: number[] = []) {
    this.waiting = new Uint8Array(tail);
  }

  /** Bytes of an incomplete sequence at the end of the last chunk (at most 3), for storing. */
  tail(): number[] {
    return [...this.waiting];
  }

  /** The text these bytes complete. */
  push(bytes: Uint8Array): string {
    let all = bytes;
    if (this.waiting.length) {
      all = new Uint8Array(this.waiting.length + bytes.length);
      all.set(this.waiting);
      all.set(bytes, this.waiting.length);
    }
    const cut = completePrefix(all);
    this.waiting = all.slice(cut);
    return decoder.decode(all.subarray(0, cut));
  }

  /** Whatever is left, at the end of the stream. */
  flush(): string {
    const rest = decoder.decode(this.waiting);
    this.waiting = new Uint8Array(0);
    return rest;
  }
}
