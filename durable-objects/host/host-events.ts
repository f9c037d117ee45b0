/**
 * A tenant host's events (spec/05, Host event stream): status changes, jobs
 * starting and ending, secrets changing — numbered, kept in the HostObject's
 * SQLite (the last EVENTS_KEPT_CHARS of them), served as SSE in the page's
 * shape with Last-Event-ID resume and heartbeats (sse-hub.ts).
 */
import { isoNow } from '../../worker/http/ids.ts';
import { SseHub, lastEventId } from '../sse-hub.ts';
import { EventLog } from '../exec/event-log.ts';
import { typedEventFormat, type TypedItem } from '../exec/typed-events.ts';
import type { Viewer } from '../credentials/held-credentials.ts';

/** About this much of a host's events is kept (a few thousand events); older ones go first. */
export const EVENTS_KEPT_CHARS = 1024 * 1024;
const LOG_ID = 'host-events';

export type HostEventType = 'status_change' | 'job_started' | 'job_ended' | 'secret_changed';

export class HostEvents {
  readonly log: EventLog<TypedItem>;
  readonly hub: SseHub;

  constructor(sql: SqlStorage, hostId: string) {
    this.log = new EventLog(sql, LOG_ID, false, { format: typedEventFormat('host_id', hostId), maxChars: EVENTS_KEPT_CHARS });
    this.hub = new SseHub(this.log);
  }

  /** Stores the event, then hands it to live viewers; returns it as stored. */
  publish(type: HostEventType, data: Record<string, unknown>): TypedItem {
    const item: TypedItem = [type, isoNow(), data];
    const first = this.log.append([item]);
    this.log.flush();
    if (this.hub.size) this.hub.publish(this.log.format.text([item], first), this.log.lastSeq());
    return item;
  }

  /** The stream after Last-Event-ID (header, or `last_event_id` in the query), until its viewer ends. */
  subscribe(request: Request, open: () => Viewer): Response {
    const viewer = open();
    return this.hub.subscribe(lastEventId(request), viewer.signal, viewer.untrack);
  }
}
