/**
 * GET /opencomputers/hosts/events: the events of all the tenant's hosts as
 * one Server-Sent Events stream. Each host's object keeps its own numbered
 * log (durable-objects/host/host-events.ts); this stream follows every
 * host's log at once and names its place in all of them in each event's id
 * (host-event-cursor.ts), so reconnecting with Last-Event-ID resumes every
 * host exactly where it was, with nothing lost or repeated while the hosts
 * keep the events. Events of one host come in order; those of different hosts
 * in the order they arrive. Hosts registered while the stream is open join
 * it within RELIST_MS. A host's log that drops (its object restarted) is
 * followed again from its place; the API key being revoked ends the stream.
 */
import type { RouteContext } from '../../router.ts';
import { hostOpRequest, hostStub } from './host-access.ts';
import { sseMessages } from '../../http/sse-reader.ts';
import { formatHostCursor, parseHostCursor, type HostCursor } from './host-event-cursor.ts';

/** How often the stream looks for hosts registered since it opened. */
export const RELIST_MS = 5_000;
/** A stream follows at most this many hosts: the most recently registered (docs/opencomputers.md). */
export const ALL_EVENTS_MAX_HOSTS = 100;
/** Revoked hosts are followed this long after their revocation (their last events). */
const REVOKED_FOLLOW_MS = 24 * 60 * 60_000;
const RETRY_MS = 1_000;
const HEARTBEAT_MS = 15_000;
const encoder = new TextEncoder();

export function allHostEvents(c: RouteContext): Response {
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const cursor = parseHostCursor(c.request.headers.get('last-event-id') ?? c.query.get('last_event_id'));
  void new MergedHostEvents(c, cursor, writable.getWriter()).run();
  return new Response(readable, {
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no' },
  });
}

class MergedHostEvents {
  /** Hosts followed, each with the reader of its log (to stop it). */
  private readonly followed = new Map<string, { stop: AbortController }>();
  private ended = false;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private relist: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly c: RouteContext,
    private readonly cursor: HostCursor,
    private readonly writer: WritableStreamDefaultWriter<Uint8Array>,
  ) {}

  async run(): Promise<void> {
    this.c.request.signal?.addEventListener('abort', () => this.end());
    this.writer.closed.catch(() => this.end());
    this.write('retry: 1000\n\n');
    this.heartbeat = setInterval(() => this.write(': heartbeat\n\n'), HEARTBEAT_MS);
    await this.followHosts();
  }

  /** Follows the hosts of the tenant not followed yet; again every RELIST_MS. */
  private async followHosts(): Promise<void> {
    if (this.ended) return;
    try {
      const since = new Date(Date.now() - REVOKED_FOLLOW_MS).toISOString();
      const { results } = await this.c.env.DB.prepare(
        `SELECT id FROM hosts WHERE org_id = ? AND kind = 'byo' AND (revoked_at IS NULL OR revoked_at > ?) ORDER BY created_at DESC LIMIT ${ALL_EVENTS_MAX_HOSTS}`,
      )
        .bind(this.c.principal.org_id, since)
        .all<{ id: string }>();
      const now = new Set(results.map((r) => r.id));
      for (const id of now) if (!this.followed.has(id)) this.follow(id);
      for (const [id, f] of this.followed) {
        if (now.has(id)) continue;
        f.stop.abort();
        this.followed.delete(id);
      }
    } catch (err) {
      console.error('all-hosts events: listing hosts failed; trying again', err);
    }
    if (!this.ended) this.relist = setTimeout(() => void this.followHosts(), RELIST_MS);
  }

  private follow(hostId: string): void {
    const stop = new AbortController();
    this.followed.set(hostId, { stop });
    void this.pump(hostId, stop.signal);
  }

  /** Reads one host's log from our place in it, for as long as the stream lasts; reconnects when it drops. */
  private async pump(hostId: string, stop: AbortSignal): Promise<void> {
    const ref = { id: hostId, org_id: this.c.principal.org_id };
    while (!this.ended && !stop.aborted) {
      try {
        const place = String(this.cursor.get(hostId) ?? 0);
        const res = await hostStub(this.c.env, hostId).fetch(hostOpRequest(this.c, ref, 'events', { headers: { 'last-event-id': place }, url: 'https://host/events', signal: stop }));
        if (res.status === 401) return this.end(); // the key behind the stream was revoked
        if (res.status === 200 && res.body) {
          const body = res.body;
          stop.addEventListener('abort', () => void body.cancel().catch(() => {}));
          for await (const msg of sseMessages(body)) {
            if (this.ended || stop.aborted) break;
            const seq = Number(msg.id);
            if (!Number.isSafeInteger(seq) || seq <= (this.cursor.get(hostId) ?? 0)) continue;
            this.cursor.set(hostId, seq);
            // The id is made as the event is queued: it names exactly the events written up to this one.
            await this.write(`id: ${formatHostCursor(this.cursor)}\nevent: ${msg.event}\ndata: ${msg.data}\n\n`);
          }
        } else await res.body?.cancel();
      } catch (err) {
        if (this.ended || stop.aborted) return;
        console.error(`all-hosts events: following host ${hostId} failed; again in ${RETRY_MS} ms`, err);
      }
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }

  private write(text: string): Promise<void> {
    if (this.ended) return Promise.resolve();
    return this.writer.write(encoder.encode(text)).catch(() => this.end());
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.relist) clearTimeout(this.relist);
    for (const f of this.followed.values()) f.stop.abort();
    this.followed.clear();
    this.writer.close().catch(() => {});
  }
}
