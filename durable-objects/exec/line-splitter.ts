/**
 * Turns one output stream's bytes into lines: UTF-8 decoded across chunk
 * boundaries (invalid bytes become U+FFFD, never an error), split after each
 * newline, a very long line cut into bounded pieces, and whatever is left
 * flushed as a last line at exit. Its state is two small values, so it can be
 * stored with the log and an evicted object resumes mid-line.
 */
import { Utf8Chunks } from './utf8-chunks.ts';

export const MAX_LINE_CHARS = 16 * 1024;

export interface SplitterState {
  /** Bytes of an incomplete UTF-8 sequence at the end of the last chunk (at most 3). */
  tail: number[];
  /** Decoded text after the last newline. */
  partial: string;
}

export class LineSplitter {
  private readonly utf8: Utf8Chunks;
  private partial: string;

  constructor(state?: SplitterState) {
    this.utf8 = new Utf8Chunks(state?.tail);
    this.partial = state?.partial ?? '';
  }

  state(): SplitterState {
    return { tail: this.utf8.tail(), partial: this.partial };
  }

  /** Lines completed by these bytes (each ends with "\n" unless it is a cut piece of a long line). */
  push(bytes: Uint8Array): string[] {
    return this.split(this.partial + this.utf8.push(bytes));
  }

  /** The unterminated rest, at exit. */
  flush(): string[] {
    const rest = this.partial + this.utf8.flush();
    this.partial = '';
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
