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
    let shown = '';
    let from = 0;
    this.pattern.lastIndex = 0;
    for (let m = this.pattern.exec(text); m; m = this.pattern.exec(text)) {
      shown += text.slice(from, m.index) + MASK;
      from = m.index + m[0].length;
    }
    const rest = text.slice(from);
    const hold = final ? 0 : this.openEnd(rest);
    return { shown: shown + rest.slice(0, rest.length - hold), held: rest.slice(rest.length - hold) };
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
