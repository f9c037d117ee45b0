/**
 * The numbered SSE events of one streamed command, kept in the object's
 * SQLite so a reconnecting viewer (Last-Event-ID) gets exactly the events
 * after the one it saw, and an evicted object loses nothing. Events are
 * written in batches (a row holds many) when the process manager commits —
 * the same moment the output behind them is acknowledged to the agent — and
 * held in memory until then; readers see both.
 */
import type { EventSource } from '../sse-hub.ts';

/** Events of one command kept at most; older batches are dropped first. */
export const MAX_LOG_BYTES = 64 * 1024 * 1024;

/** Stored rows hold about this many characters of events. */
const ROW_CHARS = 1024 * 1024;
/** A new mark every this many characters: how finely a viewer's lag is known. */
const MARK_SPACING = 64 * 1024;

export interface SseEvent {
  event: string;
  data: unknown;
}

export class EventLog implements EventSource {
  private pending = '';
  private pendingFirst = 0;
  private last: number;
  private finished: boolean;
  private storedBytes: number;
  /**
   * Where the log stood at some event numbers: [seq, characters up to and including it],
   * about MARK_SPACING apart, oldest first. They let the stream tell how far a viewer is
   * behind without reading the log; `floor` is the count before the first mark.
   */
  private marks: [number, number][] = [];
  private floor = 0;
  private chars = 0;

  constructor(
    private readonly sql: SqlStorage,
    readonly procId: string,
    finished = false,
  ) {
    this.last = sql.exec<{ n: number | null }>('SELECT MAX(last_seq) AS n FROM proc_events WHERE proc_id = ?', procId).one().n ?? 0;
    this.finished = finished;
    this.storedBytes = 0;
    // One mark a stored batch, so a woken object still knows its viewers' lag.
    for (const r of sql.exec<{ last_seq: number; n: number }>('SELECT last_seq, LENGTH(body) AS n FROM proc_events WHERE proc_id = ? ORDER BY first_seq', procId)) {
      this.storedBytes += r.n;
      this.marks.push([r.last_seq, this.storedBytes]);
    }
    this.chars = this.storedBytes;
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

  /** Numbers and records events; returns their SSE text. A terminal event marks the log done. */
  append(events: SseEvent[], terminal = false): { text: string; last: number } {
    let text = '';
    for (const e of events) {
      this.last += 1;
      text += `id: ${this.last}\nevent: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
    }
    if (!this.pending) this.pendingFirst = this.last - events.length + 1;
    this.pending += text;
    this.chars += text.length;
    const top = this.marks[this.marks.length - 1];
    const prev = this.marks.length > 1 ? this.marks[this.marks.length - 2][1] : this.floor;
    if (top && top[1] - prev < MARK_SPACING) {
      top[0] = this.last;
      top[1] = this.chars;
    } else this.marks.push([this.last, this.chars]);
    if (terminal) this.finished = true;
    return { text, last: this.last };
  }

  /** Writes held events to SQLite, in rows of about ROW_CHARS, dropping the oldest rows past the size cap. */
  flush(): void {
    if (!this.pending) return;
    let first = this.pendingFirst;
    let at = 0;
    while (at < this.pending.length) {
      // A row ends at an event boundary; rows stay well under SQLite's value limit.
      let end = this.pending.length;
      let last = this.last;
      if (end - at > ROW_CHARS) {
        end = at;
        last = first - 1;
        while (end < this.pending.length && (end === at || end - at < ROW_CHARS)) {
          end = this.pending.indexOf('\n\n', end) + 2;
          last++;
        }
      }
      const body = at === 0 && end === this.pending.length ? this.pending : this.pending.slice(at, end);
      this.sql.exec('INSERT INTO proc_events (proc_id, first_seq, last_seq, body) VALUES (?, ?, ?, ?)', this.procId, first, last, body);
      this.storedBytes += body.length;
      first = last + 1;
      at = end;
    }
    this.pending = '';
    while (this.storedBytes > MAX_LOG_BYTES) {
      const oldest = this.sql
        .exec<{ first_seq: number; n: number }>('SELECT first_seq, LENGTH(body) AS n FROM proc_events WHERE proc_id = ? ORDER BY first_seq LIMIT 1', this.procId)
        .toArray()[0];
      if (!oldest) break;
      this.sql.exec('DELETE FROM proc_events WHERE proc_id = ? AND first_seq = ?', this.procId, oldest.first_seq);
      this.storedBytes -= oldest.n;
    }
    // Marks of dropped events are never asked for again (a viewer that far back gets what is left).
    const keep = this.chars - this.storedBytes - this.pending.length;
    let gone = 0;
    while (gone < this.marks.length - 1 && this.marks[gone][1] <= keep) gone++;
    if (gone) this.floor = this.marks[gone - 1][1];
    this.marks.splice(0, gone);
  }

  /**
   * Characters of the events after `seq`, rounded up to the mark before it: a
   * viewer's distance from the end of the log, cheap enough to ask at every ack.
   */
  charsAfter(seq: number): number {
    let lo = 0;
    let hi = this.marks.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.marks[mid][0] <= seq) lo = mid + 1;
      else hi = mid;
    }
    return this.chars - (lo === 0 ? this.floor : this.marks[lo - 1][1]);
  }

  readAfter(seq: number, maxBytes: number): { text: string; last: number } {
    let text = '';
    let last = seq;
    // Read lazily: a row holds a whole commit's batch (up to about a MiB), and a catching-up
    // viewer asks for 256 KiB at a time; materialising 64 rows per call cost a GiB of heap.
    // Seek to the batch holding event seq+1 through the primary key, so a viewer deep into a long
    // stream does not make SQLite walk (and read) every earlier batch on each call.
    const from =
      this.sql.exec<{ s: number | null }>('SELECT MAX(first_seq) AS s FROM proc_events WHERE proc_id = ? AND first_seq <= ?', this.procId, seq + 1).one().s ?? 0;
    const rows = this.sql.exec<{ first_seq: number; last_seq: number; body: string }>(
      'SELECT first_seq, last_seq, body FROM proc_events WHERE proc_id = ? AND first_seq >= ? AND last_seq > ? ORDER BY first_seq',
      this.procId,
      from,
      seq,
    );
    for (const r of rows) {
      text += r.first_seq > seq ? r.body : eventsAfter(r.body, r.first_seq, seq);
      last = r.last_seq;
      if (text.length >= maxBytes) return { text, last };
    }
    if (this.pending && this.last > last) {
      text += this.pendingFirst > last ? this.pending : eventsAfter(this.pending, this.pendingFirst, last);
      last = this.last;
    }
    return { text, last };
  }

  /** Removes the command's events. */
  drop(): void {
    this.pending = '';
    this.sql.exec('DELETE FROM proc_events WHERE proc_id = ?', this.procId);
  }
}

/** The events of a batch numbered after `seq`; data lines are JSON, so "\n\n" only ever ends an event. */
function eventsAfter(body: string, firstSeq: number, seq: number): string {
  let at = 0;
  for (let n = firstSeq; n <= seq; n++) {
    const end = body.indexOf('\n\n', at);
    if (end === -1) return '';
    at = end + 2;
  }
  return body.slice(at);
}
