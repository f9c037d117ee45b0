/**
 * An organization's events: one numbered log (EventLog, the same store as a
 * command's output) and a Server-Sent Events hub per distinct filter, so
 * viewers with the same filter share the encoding work and each stream carries
 * only what its filter takes. Producers send numbered batches (outbox.ts); a
 * batch seen before is skipped, so each event is logged once.
 */
import type { EventBatch, EventEnvelope, EventFilter, NewEvent } from '../../schema/events.ts';
import { ORG_EVENTS_MAX_CHARS } from '../../schema/events.ts';
import { isoNow } from '../../worker/http/ids.ts';
import { EventLog } from '../exec/event-log.ts';
import type { SseEvent } from '../exec/sse-events.ts';
import { SseHub } from '../sse-hub.ts';
import { FilteredSource } from './filtered-source.ts';
import { filterKey } from './event-filter.ts';

/** The log's key in the shared event table (one log per organization object). */
const LOG_ID = 'org';

interface FilteredHub {
  source: FilteredSource;
  hub: SseHub;
}

export class OrgEventLog {
  private readonly log: EventLog;
  private readonly hubs = new Map<string, FilteredHub>();

  constructor(private readonly sql: SqlStorage) {
    EventLog.init(sql);
    sql.exec('CREATE TABLE IF NOT EXISTS event_sources (source TEXT PRIMARY KEY, seq INTEGER NOT NULL)');
    this.log = new EventLog(sql, LOG_ID, false, { maxChars: ORG_EVENTS_MAX_CHARS });
  }

  lastSeq(): number {
    return this.log.lastSeq();
  }

  /** Logs the batch's events not seen before, then hands them to every stream whose filter takes them. Returns how many were new. */
  publish(batch: EventBatch): number {
    const seen = this.sql.exec<{ seq: number }>('SELECT seq FROM event_sources WHERE source = ?', batch.source).toArray()[0]?.seq ?? 0;
    const fresh = batch.events.filter((e) => e.seq > seen).sort((a, b) => a.seq - b.seq);
    if (fresh.length === 0) return 0;
    const first = this.log.lastSeq() + 1;
    const items: SseEvent[] = fresh.map((e, i) => ({ event: e.event.type, data: envelope(first + i, e.event) }));
    this.log.append(items);
    this.log.flush();
    this.sql.exec(
      'INSERT INTO event_sources (source, seq) VALUES (?, ?) ON CONFLICT (source) DO UPDATE SET seq = excluded.seq',
      batch.source,
      fresh.at(-1)!.seq,
    );
    const numbered = items.map((item, i) => ({ seq: first + i, item }));
    for (const { source, hub } of this.hubs.values()) {
      const text = source.render(numbered);
      if (text) hub.publish(text, this.log.lastSeq());
    }
    return fresh.length;
  }

  /**
   * A stream of the events `filter` takes: those after `after` (null: only
   * events from now on), then live ones, with heartbeats, until the viewer goes.
   */
  subscribe(filter: EventFilter, after: number | null, gone?: AbortSignal, onEnd?: () => void): Response {
    const key = filterKey(filter);
    let entry = this.hubs.get(key);
    if (!entry) {
      const source = new FilteredSource(this.log, filter);
      const hub: SseHub = new SseHub(source, () => {
        if (hub.size === 0 && this.hubs.get(key)?.hub === hub) this.hubs.delete(key);
      });
      entry = { source, hub };
      this.hubs.set(key, entry);
    }
    const from = after === null ? this.log.lastSeq() : Math.min(after, this.log.lastSeq());
    return entry.hub.subscribe(from, gone, onEnd);
  }
}

function envelope(seq: number, e: NewEvent): EventEnvelope {
  return {
    id: String(seq),
    type: e.type,
    ...e.refs,
    workspace_id: e.workspace_id,
    project_id: e.project_id,
    data: e.data,
    timestamp: isoNow(e.at),
  };
}
