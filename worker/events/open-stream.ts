/**
 * Opening an event stream of an organization (durable-objects/org-events-object.ts)
 * once a route has decided what the caller may see: the filter travels in a
 * header, Last-Event-ID (header or `?last_event_id=`) says where to resume.
 */
import { z } from 'zod';
import type { EventFilter } from '../../schema/events.ts';
import type { Env } from '../env.ts';
import { validate } from '../http/body.ts';
import { EVENT_CREDENTIAL_HEADER, EVENT_FILTER_HEADER } from '../../durable-objects/org-events-object.ts';
import type { RouteContext } from '../router.ts';

const TypePatterns = z
  .string()
  .transform((s) => s.split(',').map((t) => t.trim()))
  .pipe(z.array(z.string().regex(/^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$/, 'must be event types like computer.stopped or computer.*')).min(1).max(16));
const LastEventId = z.string().regex(/^\d{1,15}$/, 'must be the id of an event (a number)');

/** `?types=computer.stopped,exec.*` as patterns; undefined when absent. */
export function typesOf(query: URLSearchParams): string[] | undefined {
  const raw = query.get('types');
  return raw === null ? undefined : validate(z.object({ types: TypePatterns }), { types: raw }, 'query').types;
}

/**
 * Streams the organization's events that `filter` takes, as Server-Sent Events: from now on, or
 * with `replay` from the oldest event kept, unless Last-Event-ID says where to resume.
 * `credential_id`: the API key the stream is opened with (the caller's), which ends it when revoked.
 */
export function openEventStream(
  c: RouteContext,
  env: Env,
  orgId: string,
  filter: Omit<EventFilter, 'flat'> & { flat?: boolean },
  opts: { credential_id: string | null; replay?: boolean },
): Promise<Response> {
  const last = c.request.headers.get('last-event-id') ?? c.query.get('last_event_id') ?? (opts.replay ? '0' : null);
  const headers = new Headers({ 'x-request-id': c.requestId, [EVENT_FILTER_HEADER]: JSON.stringify({ flat: false, ...filter }) });
  if (opts.credential_id) headers.set(EVENT_CREDENTIAL_HEADER, opts.credential_id);
  if (last !== null) headers.set('last-event-id', validate(z.object({ last_event_id: LastEventId }), { last_event_id: last.trim() }, 'query').last_event_id);
  const stub = env.ORG_EVENTS.get(env.ORG_EVENTS.idFromName(orgId));
  return stub.fetch(new Request(c.url.toString(), { headers }));
}
