/**
 * Turns one output stream's bytes into lines: UTF-8 decoded across chunk
 * boundaries (invalid bytes become U+FFFD, never an error), split after each
 * newline, a very long line cut into bounded pieces, and whatever is left
 * flushed as a last line at exit. Its state is two small values, so it can be
 * stored with the log and an evicted object resumes mid-line.
 */
export const MAX_LINE_CHARS = 16 * 1024;

export interface SplitterState {
  /** Bytes of an incomplete UTF-8 sequence at the end of the last chunk (at most 3). */
  tail: number[];
  /** Decoded text after the last newline. */
  partial: string;
}

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

export class LineSplitter {
  private tail: Uint8Array;
  private partial: string;

  constructor(state?: SplitterState) {
    this.tail = new Uint8Array(state?.tail ?? []);
    this.partial = state?.partial ?? '';
  }

  state(): SplitterState {
    return { tail: [...this.tail], partial: this.partial };
  }

  /** Lines completed by these bytes (each ends with "\n" unless it is a cut piece of a long line). */
  push(bytes: Uint8Array): string[] {
    let all = bytes;
    if (this.tail.length) {
      all = new Uint8Array(this.tail.length + bytes.length);
      all.set(this.tail);
      all.set(bytes, this.tail.length);
    }
    const cut = completePrefix(all);
    this.tail = all.slice(cut);
    return this.split(this.partial + decoder.decode(all.subarray(0, cut)));
  }

  /** The unterminated rest, at exit. */
  flush(): string[] {
    const rest = this.partial + decoder.decode(this.tail);
    this.partial = '';
    this.tail = new Uint8Array(0);
    return rest ? this.split(rest).concat(this.partial ? [this.takePartial()] : []) : [];
  }

  private takePartial(): string {
    const p = this.partial;
    this.partial = '';
    return p;
  }

  private split(text: string): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      const end = nl === -1 ? text.length : nl + 1;
      while (end - start > MAX_LINE_CHARS) {
        lines.push(text.slice(start, start + MAX_LINE_CHARS));
        start += MAX_LINE_CHARS;
      }
      if (nl === -1) break;
      lines.push(text.slice(start, end));
      start = end;
    }
    this.partial = text.slice(start);
    return lines;
  }
}
