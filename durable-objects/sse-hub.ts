/**
 * Server-Sent Events fan-out for one stream of numbered events. Subscribers
 * that keep up get each event as it is published (encoded once for all);
 * one that falls behind is switched to catching up from the stored log at its
 * own pace, so a slow reader neither loses events nor holds memory. Comment
 * heartbeats keep proxies from closing idle streams and find readers whose
 * going away the runtime did not report.
 * The owner asks whether any reader is too far behind (`anyBehind`) and learns
 * when readers move on (`onProgress`), so it can hold the producer back
 * instead of letting the log outrun them.
 */
const encoder = new TextEncoder();
export const HEARTBEAT_MS = 15_000;
/**
 * Bytes a subscriber's stream may queue before it is moved to catch-up. Live
 * chunks are shared by every subscriber, so this is memory per stream, not per
 * viewer; the owner holds the producer back well before a viewer gets here.
 */
const LIVE_QUEUE_BYTES = 16 * 1024 * 1024;

/** A reader catching up takes the log this much at a time… */
const CATCH_UP_CHUNK = 256 * 1024;
/**
 * …until it is this close to the end (stored characters), when it reads the
 * rest at once and goes live. The owner must hold the producer back while a
 * reader catching up is further than a fraction of this from the end, or a
 * fast command keeps the reader from ever getting here.
 */
export const FINAL_READ_CHARS = 4 * 1024 * 1024;

/** How far behind a reader may be: live (queued on its stream, bytes), or catching up (log after its cursor, stored characters). */
export interface LagLimits {
  live: number;
  catchingUp: number;
}

/** The event a reconnecting viewer last had: Last-Event-ID, or `?last_event_id=` for clients that cannot set headers; 0 for none. */
export function lastEventId(request: Request): number {
  const raw = request.headers.get('last-event-id') ?? new URL(request.url).searchParams.get('last_event_id') ?? '0';
  const n = Number(raw);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

export interface EventSource {
  /** Stored events after `seq`, as SSE text, in order; at most about `maxBytes`. Returns the last seq included. */
  readAfter(seq: number, maxBytes: number): { text: string; last: number };
  /** The seq of the last published event. */
  lastSeq(): number;
  /** True once the terminal event is published. */
  done(): boolean;
  /** About how many characters of events follow `seq` (never fewer). */
  charsAfter(seq: number): number;
}

interface Subscriber {
  writer: WritableStreamDefaultWriter<Uint8Array>;
  cursor: number;
  queued: number;
  catchingUp: boolean;
  closed: boolean;
  /** When the reader last took a write. */
  movedAt: number;
  /** Called once when the subscriber ends, however it ends. */
  onEnd?: () => void;
}

export class SseHub {
  private readonly subs = new Set<Subscriber>();
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private subscribed = false;

  constructor(
    private readonly source: EventSource,
    /** A reader moved on, or left. */
    private readonly onProgress: () => void = () => {},
  ) {}

  get size(): number {
    return this.subs.size;
  }

  /** True once anyone has subscribed (since the object woke). */
  get everSubscribed(): boolean {
    return this.subscribed;
  }

  /** True when some reader is further behind than `limits` allow. */
  anyBehind(limits: LagLimits): boolean {
    for (const sub of this.subs) if (this.behind(sub, limits)) return true;
    return false;
  }

  /** Drops readers behind `limits` that took nothing since `before`; they may come back with Last-Event-ID. */
  dropStalled(before: number, limits: LagLimits): number {
    let n = 0;
    for (const sub of this.subs) {
      if (sub.movedAt < before && this.behind(sub, limits)) {
        this.drop(sub);
        n++;
      }
    }
    return n;
  }

  /**
   * A response streaming every event after `after`, then live ones, ending
   * after the terminal event. `gone` aborting drops the viewer (it went away,
   * or its credential was revoked); `onEnd` runs once when it ends either way.
   */
  subscribe(after: number, gone?: AbortSignal, onEnd?: () => void): Response {
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const sub: Subscriber = { writer: writable.getWriter(), cursor: after, queued: 0, catchingUp: true, closed: false, movedAt: Date.now(), onEnd };
    this.subs.add(sub);
    this.subscribed = true;
    // A viewer that goes away is dropped at once, not at the next write: its request's signal
    // aborts (compatibility flag enable_request_signal), or its stream errors.
    sub.writer.closed.catch(() => this.drop(sub));
    gone?.addEventListener('abort', () => this.drop(sub));
    void sub.writer.write(encoder.encode('retry: 1000\n\n')).catch(() => this.drop(sub));
    void this.catchUp(sub);
    this.startHeartbeat();
    return new Response(readable, {
      headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no' },
    });
  }

  /** Delivers newly stored events (SSE text ending at `last`) to subscribers that are live. */
  publish(text: string, last: number): void {
    if (this.subs.size === 0) return;
    const bytes = encoder.encode(text);
    for (const sub of this.subs) {
      if (sub.catchingUp || sub.closed) continue;
      if (sub.queued > LIVE_QUEUE_BYTES) {
        sub.catchingUp = true;
        void this.catchUp(sub);
        continue;
      }
      this.sendLive(sub, bytes, last);
    }
    if (this.source.done()) for (const sub of this.subs) if (!sub.catchingUp) void this.finish(sub);
  }

  /** Ends every subscriber (the log is gone). */
  closeAll(): void {
    for (const sub of this.subs) void this.finish(sub);
  }

  /** A live reader has yet to take what is queued on its stream (and anything after its cursor); one catching up, the log after its cursor. */
  private behind(sub: Subscriber, limits: LagLimits): boolean {
    if (sub.closed) return false;
    const after = this.source.charsAfter(sub.cursor);
    return sub.catchingUp ? after > limits.catchingUp : after + sub.queued > limits.live;
  }

  /** Queues shared bytes on a live reader's stream; what it has not taken counts as its lag. */
  private sendLive(sub: Subscriber, bytes: Uint8Array, last: number): void {
    sub.queued += bytes.byteLength;
    sub.cursor = last;
    sub.writer.write(bytes).then(
      () => {
        sub.queued -= bytes.byteLength;
        sub.movedAt = Date.now();
        this.onProgress();
      },
      () => this.drop(sub),
    );
  }

  private async catchUp(sub: Subscriber): Promise<void> {
    try {
      for (;;) {
        await sub.writer.ready;
        if (sub.closed) return;
        // Near the end, read all the rest at once: going live needs a read that reaches the
        // end, and a command writing on would outrun a reader that takes a chunk at a time.
        const near = this.source.charsAfter(sub.cursor) <= FINAL_READ_CHARS;
        const { text, last } = this.source.readAfter(sub.cursor, near ? Infinity : CATCH_UP_CHUNK);
        const atEnd = last >= this.source.lastSeq();
        if (atEnd) {
          // Caught up: from here publish() feeds it. Nothing can be published between the
          // read and this line (no await), and a reader that waited for the end of each read
          // before going live would never get there while the command writes on.
          sub.catchingUp = false;
          sub.queued = 0;
          if (last !== sub.cursor) this.sendLive(sub, encoder.encode(text), last);
          break;
        }
        sub.cursor = last;
        await sub.writer.write(encoder.encode(text));
        sub.movedAt = Date.now();
        this.onProgress();
      }
      if (this.source.done()) await this.finish(sub);
    } catch {
      this.drop(sub);
    }
  }

  private async finish(sub: Subscriber): Promise<void> {
    if (sub.closed) return;
    sub.closed = true;
    this.subs.delete(sub);
    sub.onEnd?.();
    await sub.writer.close().catch(() => {});
    this.stopHeartbeatIfIdle();
    this.onProgress();
  }

  private drop(sub: Subscriber): void {
    if (sub.closed) return;
    sub.closed = true;
    this.subs.delete(sub);
    sub.onEnd?.();
    void sub.writer.abort(new Error('the viewer went away or stopped reading')).catch(() => {});
    // Aborting rejects the writer's `ready` too; nothing may wait on it any more.
    sub.writer.ready.catch(() => {});
    this.stopHeartbeatIfIdle();
    this.onProgress();
  }

  private startHeartbeat(): void {
    if (this.heartbeat) return;
    const beat = encoder.encode(': heartbeat\n\n');
    this.heartbeat = setInterval(() => {
      for (const sub of this.subs) if (!sub.closed) sub.writer.write(beat).catch(() => this.drop(sub));
    }, HEARTBEAT_MS);
  }

  private stopHeartbeatIfIdle(): void {
    if (this.subs.size === 0 && this.heartbeat) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
    }
  }
}
