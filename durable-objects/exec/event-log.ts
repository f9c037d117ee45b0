/**
 * The numbered SSE events of one streamed command, kept in the object's
 * SQLite so a reconnecting viewer (Last-Event-ID) gets exactly the events
 * after the one it saw, and an evicted object loses nothing. Events are
 * written in rows of many when the process manager commits — the same moment
 * the output behind them is acknowledged to the agent — and held in memory
 * until then; readers see both. Rows hold compact items (sse-events.ts), made
 * into SSE text only for a viewer. An index of the stored rows (numbers only)
 * stays in memory, so seeking, trimming and telling how far behind a viewer
 * is never read the log. Sizes are in stored characters.
 */
import type { EventSource } from '../sse-hub.ts';
import { itemChars, sseText, type LogItem } from './sse-events.ts';

/** How a log's items are stored compactly and shown as SSE text. */
export interface LogFormat<I> {
  /** The SSE text of items numbered from `first`, skipping those numbered `after` or lower. */
  text(items: readonly I[], first: number, after?: number): string;
  /** About how many characters an item takes stored (row sizes and lag). */
  chars(item: I): number;
}

/** Streamed commands' events (spec/04): output lines, then exit, timeout or error. */
export const EXEC_FORMAT: LogFormat<LogItem> = { text: sseText, chars: itemChars };

/** Events of one command kept at most; older rows are dropped first. */
export const MAX_LOG_BYTES = 64 * 1024 * 1024;

/** Stored rows hold about this many characters (SQLite values stay well under its limit). */
const ROW_CHARS = 1024 * 1024;

/** A stored row: its events, and the log's length in characters up to its end. */
interface RowIndex {
  first: number;
  last: number;
  end: number;
}

export class EventLog<I = LogItem> implements EventSource {
  private pending: I[] = [];
  private pendingChars = 0;
  private pendingFirst = 0;
  private last: number;
  private finished: boolean;
  private readonly rows: RowIndex[] = [];
  /** Characters of the log before the oldest stored row (dropped ones). */
  private base = 0;

  readonly format: LogFormat<I>;
  private readonly maxChars: number;

  constructor(
    private readonly sql: SqlStorage,
    /** The log's key in the table: a process id, or another stream's name. */
    readonly procId: string,
    finished = false,
    /** Another kind of event than a streamed command's, or a smaller cap than MAX_LOG_BYTES. */
    opts: { format?: LogFormat<I>; maxChars?: number } = {},
  ) {
    this.format = opts.format ?? (EXEC_FORMAT as unknown as LogFormat<I>);
    this.maxChars = opts.maxChars ?? MAX_LOG_BYTES;
    let end = 0;
    for (const r of sql.exec<{ first_seq: number; last_seq: number; n: number }>(
      'SELECT first_seq, last_seq, LENGTH(body) AS n FROM proc_events WHERE proc_id = ? ORDER BY first_seq',
      procId,
    )) {
      end += r.n;
      this.rows.push({ first: r.first_seq, last: r.last_seq, end });
    }
    this.last = this.rows.at(-1)?.last ?? 0;
    this.finished = finished;
  }

  static init(sql: SqlStorage): void {
    sql.exec(`CREATE TABLE IF NOT EXISTS proc_events (
      proc_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, body TEXT NOT NULL,
      PRIMARY KEY (proc_id, first_seq))`);
  }

  lastSeq(): number {
    return this.last;
  }

  done(): boolean {
    return this.finished;
  }

  /** Numbers and records items; a terminal event marks the log done. Returns the number of the first. */
  append(items: I[], terminal = false): number {
    if (!this.pending.length) this.pendingFirst = this.last + 1;
    const first = this.last + 1;
    for (const it of items) {
      this.pending.push(it);
      this.pendingChars += this.format.chars(it);
    }
    this.last += items.length;
    if (terminal) this.finished = true;
    return first;
  }

  /** Writes held items to SQLite, in rows of about ROW_CHARS, dropping the oldest rows past the size cap. */
  flush(): void {
    let end = this.storedEnd();
    let from = 0;
    while (from < this.pending.length) {
      let to = from;
      for (let size = 0; to < this.pending.length && (to === from || size < ROW_CHARS); to++) size += this.format.chars(this.pending[to]);
      const first = this.pendingFirst + from;
      const last = this.pendingFirst + to - 1;
      const body = JSON.stringify(from === 0 && to === this.pending.length ? this.pending : this.pending.slice(from, to));
      this.sql.exec('INSERT INTO proc_events (proc_id, first_seq, last_seq, body) VALUES (?, ?, ?, ?)', this.procId, first, last, body);
      end += body.length;
      this.rows.push({ first, last, end });
      from = to;
    }
    this.pending = [];
    this.pendingChars = 0;
    while (this.rows.length > 1 && end - this.base > this.maxChars) {
      const oldest = this.rows.shift()!;
      this.sql.exec('DELETE FROM proc_events WHERE proc_id = ? AND first_seq = ?', this.procId, oldest.first);
      this.base = oldest.end;
    }
  }

  /**
   * Characters of the events after `seq`, counting the whole row (or the held
   * batch) that holds it: a viewer's distance from the end of the log, cheap
   * enough to ask at every acknowledgement.
   */
  charsAfter(seq: number): number {
    const total = this.storedEnd() + this.pendingChars;
    if (this.pending.length && seq >= this.pendingFirst - 1) return seq >= this.last ? 0 : this.pendingChars;
    const i = this.rowHolding(seq + 1);
    if (i === -1) return seq >= this.last ? 0 : total - this.base;
    return total - (i === 0 ? this.base : this.rows[i - 1].end);
  }

  readAfter(seq: number, maxBytes: number): { text: string; last: number } {
    let text = '';
    let last = seq;
    for (const chunk of this.chunksAfter(seq)) {
      text += this.format.text(chunk.items, chunk.first, last);
      last = chunk.first + chunk.items.length - 1;
      if (text.length >= maxBytes) break;
    }
    return { text, last };
  }

  /** The items after `seq` with their numbers, about `maxChars` of them (stored size) at most: for readers that render items their own way. */
  itemsAfter(seq: number, maxChars: number): { items: { seq: number; item: I }[]; last: number } {
    const items: { seq: number; item: I }[] = [];
    let last = seq;
    let chars = 0;
    for (const chunk of this.chunksAfter(seq)) {
      chunk.items.forEach((item, i) => {
        const n = chunk.first + i;
        if (n <= seq) return;
        items.push({ seq: n, item });
        chars += this.format.chars(item);
      });
      last = chunk.first + chunk.items.length - 1;
      if (chars >= maxChars) break;
    }
    return { items, last };
  }

  /** Stored rows from the one holding `seq + 1`, then the held batch; read lazily (rows are up to a MiB, a catching-up reader takes a little at a time). */
  private *chunksAfter(seq: number): Generator<{ first: number; items: I[] }> {
    let last = seq;
    const i = this.rowHolding(seq + 1);
    if (i !== -1) {
      const rows = this.sql.exec<{ first_seq: number; last_seq: number; body: string }>(
        'SELECT first_seq, last_seq, body FROM proc_events WHERE proc_id = ? AND first_seq >= ? ORDER BY first_seq',
        this.procId,
        this.rows[i].first,
      );
      for (const r of rows) {
        yield { first: r.first_seq, items: JSON.parse(r.body) as I[] };
        last = r.last_seq;
      }
    }
    if (this.pending.length && this.last > last) yield { first: this.pendingFirst, items: this.pending };
  }

  /** Removes the command's events. */
  drop(): void {
    this.pending = [];
    this.pendingChars = 0;
    this.rows.length = 0;
    this.sql.exec('DELETE FROM proc_events WHERE proc_id = ?', this.procId);
  }

  private storedEnd(): number {
    return this.rows.at(-1)?.end ?? this.base;
  }

  /** The index of the stored row holding event `seq` (or the first after it), -1 when none is left. */
  private rowHolding(seq: number): number {
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.rows[mid].last < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.rows.length ? lo : -1;
  }
}
