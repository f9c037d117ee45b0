/**
 * One AgentSessionObject per AI agent session (docs/agents.md): it runs the
 * session's loop (agent-session/session-loop.ts) against the session's model
 * (model-endpoint.ts) and its host (host-job-tools.ts: the host's jobs and
 * files), keeps its state (session-store.ts) and its numbered events
 * (an EventLog served by an SseHub, Last-Event-ID resume and heartbeats).
 *
 * The loop runs in memory; an alarm is its watchdog. While the session has
 * not ended the alarm comes back every WATCHDOG_MS, and an object that woke
 * without its loop (evicted, restarted) picks the loop up from the saved
 * state — so a session never hangs without an end: at worst its own
 * timeout ends it at the next watchdog.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env.ts';
import { SESSION_LIMITS } from '../schema/api-agents.ts';
import { hostLostGraceMs } from './host/tenant-host.ts';
import { SecretSet } from './host/secret-mask.ts';
import { EventLog } from './exec/event-log.ts';
import { typedEventFormat, type TypedItem } from './exec/typed-events.ts';
import { SseHub, lastEventId } from './sse-hub.ts';
import { SessionEvents, type SessionEvent } from './agent-session/session-events.ts';
import { LoopStop, runLoop, type LoopState } from './agent-session/session-loop.ts';
import { isTerminal } from './agent-session/state-table.ts';
import { hostJobTools } from './agent-session/host-job-tools.ts';
import { modelEndpoint } from './agent-session/model-endpoint.ts';
import { chatCompletion } from './agent-session/openai-client.ts';
import { SessionStore, type SessionMeta } from './agent-session/session-store.ts';

const WATCHDOG_MS = 30_000;
/** A model stream silent this long fails the call. */
const MODEL_IDLE_MS = 60_000;
/** A cancel answers once the session has ended, or after this long. */
const CANCEL_WAIT_MS = 25_000;
const LOG_ID = 'session';

export class AgentSessionObject extends DurableObject<Env> {
  private readonly store: SessionStore;
  private log: EventLog<TypedItem> | null = null;
  private hub: SseHub | null = null;
  private running: Promise<void> | null = null;
  private stop: AbortController | null = null;
  private masks = new SecretSet([]);

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    EventLog.init(ctx.storage.sql);
    this.store = new SessionStore(ctx.storage, env.DB);
  }

  /** Takes a new session (the route has written its D1 row) and starts its loop. */
  async start(meta: SessionMeta, state: LoopState): Promise<void> {
    if (await this.store.meta()) return;
    await this.store.create(meta, state);
    await this.ctx.storage.setAlarm(Date.now());
  }

  /** Cancels the session: the step in flight is cut short (a command's process group stopped); answers once it has ended. */
  async cancel(): Promise<void> {
    const meta = await this.store.meta();
    const state = await this.store.load();
    if (!meta || !state || isTerminal(state.status)) return;
    await this.ctx.storage.put('cancel_requested', true);
    if (!this.running) await this.resume(meta);
    this.stop?.abort(new LoopStop('cancelled', 'the session was cancelled'));
    const running = this.running;
    if (running) await Promise.race([running, new Promise((r) => setTimeout(r, CANCEL_WAIT_MS))]);
  }

  /** GET …/stream and …/events: the session's events after Last-Event-ID, then live ones until its end. */
  async fetch(request: Request): Promise<Response> {
    const meta = await this.store.meta();
    const state = await this.store.load();
    if (!meta || !state) return new Response('no such session', { status: 404 });
    const { log, hub } = this.events(meta, state);
    // A viewer wakes a session whose object woke without its loop, without waiting for the watchdog.
    if (!this.running && !isTerminal(state.status)) await this.resume(meta);
    const after = lastEventId(request);
    // A viewer that has the terminal event already is told not to reconnect.
    if (log.done() && after >= log.lastSeq()) return new Response(null, { status: 204 });
    return hub.subscribe(after, request.signal);
  }

  async alarm(): Promise<void> {
    const meta = await this.store.meta();
    const state = await this.store.load();
    if (!meta || !state || isTerminal(state.status)) return;
    if (!this.running) await this.resume(meta);
    await this.ctx.storage.setAlarm(Date.now() + WATCHDOG_MS);
  }

  private events(meta: SessionMeta, state: LoopState): { log: EventLog<TypedItem>; hub: SseHub } {
    if (!this.log || !this.hub) {
      this.log = new EventLog<TypedItem>(this.ctx.storage.sql, LOG_ID, isTerminal(state.status), { format: typedEventFormat('session_id', meta.id) });
      this.hub = new SseHub(this.log);
    }
    return { log: this.log, hub: this.hub };
  }

  private mask = (s: string): string => this.masks.mask(s, true).shown;

  /** Starts the loop from the saved state (a new session, or one whose object woke without it). */
  private async resume(meta: SessionMeta): Promise<void> {
    const state = await this.store.load();
    if (!state || isTerminal(state.status) || this.running) return;
    const { log, hub } = this.events(meta, state);
    // The secrets are read before anything is emitted, so the first event is masked too.
    this.masks = new SecretSet((await modelEndpoint(this.env, meta.host, meta.choice)).secrets);
    const sink = (e: SessionEvent) => {
      const terminal = isTerminal(e.type as LoopState['status']);
      const item: TypedItem = [e.type, e.timestamp, e.data];
      const first = log.append([item], terminal);
      log.flush();
      hub.publish(log.format.text([item], first), log.lastSeq());
    };
    const events = new SessionEvents(meta.id, this.mask, sink);
    const host = this.env.HOST.get(this.env.HOST.idFromName(meta.host.id));
    const tools = hostJobTools(host, meta.host, { get: () => this.store.inflightJob(), set: (id) => this.store.setInflightJob(id) }, { graceMs: hostLostGraceMs(this.env) });
    const stop = new AbortController();
    this.stop = stop;
    if (await this.ctx.storage.get('cancel_requested')) stop.abort(new LoopStop('cancelled', 'the session was cancelled'));
    const deps = {
      now: () => Date.now(),
      host: tools,
      events,
      persist: (s: LoopState) => this.store.save(meta.id, s, this.mask),
      callModel: async (req: Parameters<typeof chatCompletion>[1], signal: AbortSignal) => {
        const ep = await modelEndpoint(this.env, meta.host, meta.choice);
        this.masks = new SecretSet([...this.masks.values, ...ep.secrets]);
        if (!ep.ok) return { ok: false as const, error: ep.error };
        return chatCompletion(ep.endpoint, req, { timeoutMs: SESSION_LIMITS.model_call_ms, idleMs: MODEL_IDLE_MS, signal });
      },
    };
    this.running = runLoop(state, deps, stop.signal)
      .catch((e: unknown) => {
        // Left for the watchdog: the next alarm picks the loop up from the saved state.
        console.error(`agent session ${meta.id}: the loop stopped: ${(e as Error).message}`);
      })
      .finally(async () => {
        this.running = null;
        this.stop = null;
        // An ended session needs no watchdog.
        if (isTerminal(state.status)) await this.ctx.storage.deleteAlarm();
        // A command still recorded in flight (the session ended around it) is stopped.
        const job = this.store.inflightJob();
        if (job) {
          this.store.setInflightJob(null);
          await host.cancelJob(meta.host, job).catch(() => {});
        }
      });
  }
}
