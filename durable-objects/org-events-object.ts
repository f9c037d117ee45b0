/**
 * One OrgEventsObject per organization (named by its id): the organization's
 * event log — what its computers (and its OpenComputers hosts) go through —
 * served as Server-Sent Events with ids, Last-Event-ID resume and heartbeats.
 *
 * Producers call `publish` with numbered batches (durable-objects/events/
 * outbox.ts does that for a Durable Object). Routes, having checked who may
 * see what, open streams through `fetch` with the filter in EVENT_FILTER_HEADER.
 *
 * It also charges the organization for the disk its snapshots hold, hourly
 * (durable-objects/snapshots/snapshot-billing.ts): the one per-organization
 * object there is.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env.ts';
import { EventBatch, EventFilter } from '../schema/events.ts';
import { ApiError, fail, ok, type Result } from '../schema/errors.ts';
import { errorResponse } from '../worker/http/responses.ts';
import { OrgEventLog } from './events/org-event-log.ts';
import { SnapshotBilling } from './snapshots/snapshot-billing.ts';
import { HeldCredentials } from './credentials/held-credentials.ts';
import { apiKeyLive } from '../worker/tenancy/principals.ts';

/** The stream's filter (JSON of EventFilter), set by the route that checked the caller. */
export const EVENT_FILTER_HEADER = 'x-hangar-event-filter';
/** The API key the stream is opened with (absent: none), set by the same route. */
export const EVENT_CREDENTIAL_HEADER = 'x-hangar-credential';

export class OrgEventsObject extends DurableObject<Env> {
  private readonly events: OrgEventLog;
  private readonly billing: SnapshotBilling;
  /** Streams are SSE viewers: revoking the key one was opened with ends it (credentials contract). */
  private readonly held: HeldCredentials;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.events = new OrgEventLog(ctx.storage.sql);
    this.billing = new SnapshotBilling(ctx, env);
    this.held = new HeldCredentials(ctx, (id) => apiKeyLive(env, id, { fresh: true }));
  }

  /** The API key `credentialId` was revoked: its streams end, and it opens no more. */
  async endCredential(credentialId: string): Promise<number> {
    return this.held.revoke(credentialId);
  }

  /** A snapshot of organization `orgId` became ready: its hourly storage charge runs. */
  async snapshotsChanged(orgId: string): Promise<void> {
    await this.billing.changed(orgId);
  }

  async alarm(): Promise<void> {
    await this.billing.run();
  }

  /** Takes a producer's batch; events it has sent before are skipped. Returns how many were new. */
  async publish(batch: EventBatch): Promise<Result<number>> {
    const parsed = EventBatch.safeParse(batch);
    if (!parsed.success) return fail('BAD_REQUEST', `malformed event batch: ${parsed.error.issues[0]?.message}`);
    return ok(this.events.publish(parsed.data));
  }

  /** The number of the newest event (0 when there is none). */
  async lastEventId(): Promise<number> {
    return this.events.lastSeq();
  }

  /** A stream: the filter in EVENT_FILTER_HEADER, resuming after Last-Event-ID (absent: from now on). */
  async fetch(request: Request): Promise<Response> {
    const requestId = request.headers.get('x-request-id') ?? '';
    let filter: EventFilter;
    try {
      filter = EventFilter.parse(JSON.parse(request.headers.get(EVENT_FILTER_HEADER) ?? ''));
    } catch {
      return errorResponse(new ApiError('BAD_REQUEST', 'malformed event stream request'), requestId);
    }
    const credential = request.headers.get(EVENT_CREDENTIAL_HEADER) || null;
    if (!(await this.held.admits(credential))) return errorResponse(new ApiError('UNAUTHORIZED', 'credential revoked'), requestId);
    const last = request.headers.get('last-event-id');
    const after = last === null ? null : Number(last);
    const viewer = new AbortController();
    request.signal?.addEventListener('abort', () => viewer.abort());
    const untrack = this.held.track(credential, () => viewer.abort());
    return this.events.subscribe(filter, after !== null && Number.isSafeInteger(after) && after >= 0 ? after : null, viewer.signal, untrack);
  }
}
