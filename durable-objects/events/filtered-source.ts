/**
 * One filter's view of an organization's event log, as an SseHub reads it:
 * the matching events after a number, as SSE text. Event numbers stay those of
 * the whole log, so a stream's ids have gaps, and Last-Event-ID resumes any
 * filtered stream exactly.
 */
import type { EventEnvelope, EventFilter } from '../../schema/events.ts';
import type { EventSource } from '../sse-hub.ts';
import type { EventLog } from '../exec/event-log.ts';
import type { SseEvent } from '../exec/sse-events.ts';
import { matches } from './event-filter.ts';

export class FilteredSource implements EventSource {
  constructor(
    private readonly log: EventLog,
    readonly filter: EventFilter,
  ) {}

  readAfter(seq: number, maxBytes: number): { text: string; last: number } {
    const { items, last } = this.log.itemsAfter(seq, maxBytes);
    return { text: this.render(items), last };
  }

  /** SSE text of the events among `items` this filter takes. */
  render(items: { seq: number; item: unknown }[]): string {
    let text = '';
    for (const { seq, item } of items) {
      const e = (item as SseEvent).data as EventEnvelope;
      if (!matches(this.filter, e)) continue;
      const data = this.filter.flat ? { ...e.data, ...e } : e;
      text += `id: ${seq}\nevent: ${this.filter.event ?? e.type}\ndata: ${JSON.stringify(data)}\n\n`;
    }
    return text;
  }

  lastSeq(): number {
    return this.log.lastSeq();
  }

  done(): boolean {
    return false;
  }

  charsAfter(seq: number): number {
    return this.log.charsAfter(seq);
  }
}
