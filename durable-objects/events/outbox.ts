/**
 * Events a Durable Object produces, on their way to its organization's event
 * log. Each is written to the producer's own SQLite first (so an event is
 * never lost to a failed call or an eviction) and sent in order, in batches
 * numbered per source, so the log takes a batch that was sent twice only once.
 * A failed send is tried again a few seconds later, and whenever the object
 * wakes with events still waiting.
 */
import type { EventBatch, NewEvent } from '../../schema/events.ts';

const BATCH = 100;
const RETRY_MS = 5_000;

export type SendBatch = (batch: EventBatch) => Promise<void>;

export class EventOutbox {
  private sending: Promise<boolean> | null = null;
  private retry: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly sql: SqlStorage,
    private readonly source: () => string,
    private readonly send: SendBatch,
  ) {
    sql.exec('CREATE TABLE IF NOT EXISTS event_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)');
    if (this.waiting() > 0) this.soon(0);
  }

  /** Queues an event (durably, before this returns) and starts sending. */
  emit(event: NewEvent): void {
    this.sql.exec('INSERT INTO event_outbox (body) VALUES (?)', JSON.stringify(event));
    this.soon(0);
  }

  /** Sends everything waiting; false when a send failed (it is retried later). */
  flush(): Promise<boolean> {
    this.sending ??= this.drain().finally(() => (this.sending = null));
    return this.sending;
  }

  waiting(): number {
    return this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM event_outbox').one().n;
  }

  private async drain(): Promise<boolean> {
    for (;;) {
      const rows = this.sql.exec<{ seq: number; body: string }>('SELECT seq, body FROM event_outbox ORDER BY seq LIMIT ?', BATCH).toArray();
      if (rows.length === 0) return true;
      try {
        await this.send({ source: this.source(), events: rows.map((r) => ({ seq: r.seq, event: JSON.parse(r.body) as NewEvent })) });
      } catch (err) {
        console.error('events: sending to the organization log failed; retrying', err);
        this.soon(RETRY_MS);
        return false;
      }
      this.sql.exec('DELETE FROM event_outbox WHERE seq <= ?', rows.at(-1)!.seq);
    }
  }

  private soon(ms: number): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      void this.flush();
    }, ms);
  }
}
