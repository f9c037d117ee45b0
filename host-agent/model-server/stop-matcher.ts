/**
 * OpenAI `stop` sequences matched on the generated text as a client sees it
 * (llama.cpp's own triggers work on token boundaries and miss a sequence that
 * starts mid-token or with a space). Text that could still become a stop
 * sequence is held back, so a streamed answer never shows the stop sequence
 * or anything after it.
 */
export class StopMatcher {
  private held = '';
  private readonly stops: string[];
  stopped = false;

  constructor(stops: string[] | undefined) {
    this.stops = (stops ?? []).filter((s) => s.length > 0);
  }

  /** Takes generated text; returns what may be shown now. After a match, nothing more. */
  push(text: string): string {
    if (this.stopped) return '';
    if (!this.stops.length) return text;
    const buf = this.held + text;
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i !== -1 && (cut === -1 || i < cut)) cut = i;
    }
    if (cut !== -1) {
      this.stopped = true;
      this.held = '';
      return buf.slice(0, cut);
    }
    const keep = this.partialTail(buf);
    this.held = buf.slice(buf.length - keep);
    return buf.slice(0, buf.length - keep);
  }

  /** What was held back when generation ended without a match. */
  flush(): string {
    const rest = this.stopped ? '' : this.held;
    this.held = '';
    return rest;
  }

  /** Length of the longest end of `buf` that begins some stop sequence. */
  private partialTail(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
