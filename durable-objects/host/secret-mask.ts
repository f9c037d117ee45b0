/**
 * Secrets' values masked as `***` in a job's output, in the record and the
 * stream alike. Output comes in chunks and a value may be cut by a chunk's
 * end, so the masker holds back the end of a chunk while it could still be the
 * start of a value, and lets it go (masked or not) once the next chunk, or the
 * end of the stream, decides. Values shorter than MIN_MASKED_CHARS are not
 * masked: hiding every "a" or "1" would ruin the output and protect nothing.
 */
export const MIN_MASKED_CHARS = 4;
export const MASK = '***';

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** What to mask: longest values first, so one containing another is masked whole. */
export class SecretSet {
  readonly values: string[];
  private readonly pattern: RegExp | null;

  constructor(values: Iterable<string>) {
    this.values = [...new Set([...values].filter((v) => v.length >= MIN_MASKED_CHARS))].sort((a, b) => b.length - a.length);
    this.pattern = this.values.length ? new RegExp(this.values.map(escape).join('|'), 'g') : null;
  }

  get empty(): boolean {
    return this.pattern === null;
  }

  /**
   * Masks `text` (the held-back tail of the last chunk, then this one) and
   * splits it: what can be shown now, and the end to hold back because a
   * value may start there and go on in the next chunk.
   */
  mask(text: string, final: boolean): { shown: string; held: string } {
    if (!this.pattern) return { shown: text, held: '' };
    const matches: [number, number][] = [];
    this.pattern.lastIndex = 0;
    for (let m = this.pattern.exec(text); m; m = this.pattern.exec(text)) matches.push([m.index, m.index + m[0].length]);
    // Hold back the longest end that may still grow into a value; a whole value that the held
    // end starts inside of is held with it, since with what follows it may be part of a longer one.
    let cut = final ? text.length : text.length - this.openEnd(text);
    for (let i = matches.length - 1; i >= 0; i--) if (matches[i][0] < cut && cut < matches[i][1]) cut = matches[i][0];
    let shown = '';
    let from = 0;
    for (const [start, end] of matches) {
      if (end > cut) break;
      shown += text.slice(from, start) + MASK;
      from = end;
    }
    return { shown: shown + text.slice(from, cut), held: text.slice(cut) };
  }

  /** Length of the longest end of `text` that is the start (not the whole) of some value. */
  private openEnd(text: string): number {
    let best = 0;
    for (const v of this.values) {
      // Only a start within the last len-1 characters can be an unfinished value.
      for (let at = Math.max(0, text.length - v.length + 1); at < text.length; at++) {
        if (text.length - at <= best) break;
        if (text.charCodeAt(at) === v.charCodeAt(0) && v.startsWith(text.slice(at))) {
          best = text.length - at;
          break;
        }
      }
    }
    return best;
  }
}
