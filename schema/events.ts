/**
 * Events of an organization: what its computers (and, for OpenComputers, its
 * hosts) go through, kept in one numbered log per organization
 * (durable-objects/org-events-object.ts) and served as Server-Sent Events.
 *
 * On the wire every event is
 *
 *     id: 42
 *     event: computer.stopped
 *     data: {"id":"42","type":"computer.stopped","computer_id":"…","workspace_id":"…","project_id":"…",
 *            "data":{"status":"stopped","previous_status":"stopping","reason":"auto_stopped"},"timestamp":"…"}
 *
 * the shape of the OpenComputers page's streams (`type`, `<thing>_id`,
 * `data`, `timestamp`), with the ids of what it is about (`refs`) at the top.
 */
import { z } from 'zod';
import { WatchProducers } from './guest.ts';

const Id = z.string().min(1).max(64);

/** What an event is about, as `<kind>_id` keys: computer_id, host_id, snapshot_id, session_id… */
export const EventRefs = z.record(z.string().regex(/^[a-z]+_id$/).max(32), Id).refine((r) => Object.keys(r).length <= 8, 'at most 8 refs');
export type EventRefs = z.infer<typeof EventRefs>;

/** An event as its producer hands it to the log. */
export const NewEvent = z.object({
  type: z.string().regex(/^[a-z_]+(\.[a-z_]+)*$/).max(64),
  refs: EventRefs,
  /** For filtering and for credentials scoped to workspaces/projects; null for organization-wide things (hosts). */
  workspace_id: Id.nullable(),
  project_id: Id.nullable(),
  data: z.record(z.string(), z.unknown()),
  /** When it happened (ms since the epoch). */
  at: z.number().int().nonnegative(),
});
export type NewEvent = z.infer<typeof NewEvent>;

/** A batch from one producer; `seq` counts up per source, so a batch sent twice is taken once. */
export const EventBatch = z.object({
  source: z.string().min(1).max(128),
  events: z.array(z.object({ seq: z.number().int().positive(), event: NewEvent })).min(1).max(500),
});
export type EventBatch = z.infer<typeof EventBatch>;

/** The stored and sent form. */
export interface EventEnvelope {
  id: string;
  type: string;
  workspace_id: string | null;
  project_id: string | null;
  data: Record<string, unknown>;
  timestamp: string;
  [ref: `${string}_id`]: string | null;
}

/**
 * Which events a stream carries. Every field narrows; `scope_*` is the
 * credential's reach (never widened by the caller), the rest what was asked.
 */
export const EventFilter = z.object({
  /** Every ref must match, e.g. {computer_id: X}. */
  refs: z.record(z.string(), z.string()).default({}),
  /** Only events that carry a ref of this kind (`computer` → has computer_id). */
  kind: z.string().regex(/^[a-z]+$/).optional(),
  workspace_ids: z.array(z.string()).optional(),
  project_ids: z.array(z.string()).optional(),
  scope_workspace_ids: z.array(z.string()).nullable().default(null),
  scope_project_ids: z.array(z.string()).nullable().default(null),
  /** Type patterns: `computer.stopped`, or a prefix with `*` (`computer.*`, `*`). */
  types: z.array(z.string()).optional(),
  /** Send `data`'s fields at the top level too (clients that read `status`, `step`… there). */
  flat: z.boolean().default(false),
  /** The SSE `event:` name of every event (`snapshot_progress`) instead of its type. */
  event: z.string().regex(/^[a-z_]+$/).optional(),
});
export type EventFilter = z.infer<typeof EventFilter>;

/** Why a computer's status changed (`data.reason` of computer.<status> events). */
export const STATUS_REASONS = [
  'created',
  'requested',
  'provisioned',
  'auto_stopped',
  'credits_exhausted',
  'exited',
  'host_restarted',
  'lost',
  'failed',
  'moved',
  'restored',
] as const;
export type StatusReason = (typeof STATUS_REASONS)[number];

/** Events kept per organization at most (stored characters; the oldest go first). */
export const ORG_EVENTS_MAX_CHARS = 16 * 1024 * 1024;

/** What the route asks for, after checking the caller and the query. */
export const EventsOpen = z.object({
  producers: WatchProducers,
  /** Names asked for that are no producer at all: each gets an error frame. */
  unknown: z.array(z.string().max(64)).max(16),
  /** The desktop's producers asked for: the object looks at the desktop for them (durable-objects/events/desktop-producers.ts). */
  desktop: z.array(z.enum(['window', 'clipboard'])).max(2),
  subprotocol: z.string().nullable(),
});
export type EventsOpen = z.infer<typeof EventsOpen>;
