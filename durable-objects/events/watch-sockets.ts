/**
 * The events socket of a computer (subprotocol `miosa-events-v1`): a
 * WebSocket on GET …/events that streams what happens inside the running
 * computer as JSON text frames `{type, data, payload, timestamp}` (`payload`
 * is `data` again, for clients that read it there). Each socket is one watch
 * in the computer's guest (protocol 1.6 watch.start / watch.stop), restarted
 * when the agent comes back; the socket closes with 4001 when the computer
 * stops. Hibernation-friendly: the watch's id and producers live on the socket.
 * `window` and `clipboard` are not the guest agent's: the object looks at the
 * desktop for them (desktop-producers.ts).
 */
import type { ComputerEvent, WatchProducers, WatchStarted } from '../../schema/guest.ts';
import type { EventsOpen } from '../../schema/events.ts';
import { ApiError, type Result } from '../../schema/errors.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import type { AgentLink } from '../agent-link.ts';
import { closeSocket } from '../exec/client-sockets.ts';
import { newProcId } from '../exec/proc-id.ts';
import { agentTooOld } from '../agent-version.ts';
import { DESKTOP_PRODUCERS, DesktopProducers, desktopTag, type LookAtDesktop } from './desktop-producers.ts';
import { sendFrame } from './socket-frame.ts';

/** The protocol minor that brought watches. */
const WATCH_MINOR = 6;

export const EVENTS_SUBPROTOCOL = 'miosa-events-v1';
/** Producers the issue names; window and clipboard belong to the desktop. */
export const PRODUCERS = ['process', 'file', 'idle', 'window', 'clipboard'] as const;
export { DESKTOP_PRODUCERS };
/** The computer stopped (or restarted): its watches ended with it. */
export const CLOSE_STOPPED = 4001;

const TAG = 'events';
const tagOf = (watchId: string) => `events:${watchId}`;


interface WatchAttachment {
  kind: 'events';
  watch_id: string;
  producers: WatchProducers;
}

export class WatchSockets {
  private readonly desktop: DesktopProducers;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly link: AgentLink,
    lookAtDesktop: LookAtDesktop,
  ) {
    this.desktop = new DesktopProducers(ctx, lookAtDesktop);
  }

  /** Upgrades to an events socket and starts its watch; an error response (no upgrade) when the watch cannot start. */
  async open(req: EventsOpen, requestId: string, credentialTags: string[] = []): Promise<Response> {
    const watchId = newProcId();
    const pair = new WebSocketPair();
    const ws = pair[1];
    // Tagged with the credential it was opened with: revoking that closes it (HeldCredentials).
    this.ctx.acceptWebSocket(ws, [TAG, tagOf(watchId), ...req.desktop.map(desktopTag), ...credentialTags]);
    ws.serializeAttachment({ kind: 'events', watch_id: watchId, producers: req.producers } satisfies WatchAttachment);
    const started = await this.start(watchId, req.producers);
    if (!started.ok) {
      closeSocket(ws, 1011, started.message);
      return errorResponse(new ApiError(started.code, started.message), requestId);
    }
    for (const name of req.unknown) {
      sendFrame(ws, 'error', { code: 'UNKNOWN_PRODUCER', message: `unknown producer ${JSON.stringify(name)}; producers are ${PRODUCERS.join(', ')}` });
    }
    for (const u of started.value.unavailable) sendFrame(ws, 'producer.unavailable', { producer: u.producer, reason: u.reason });
    if (req.desktop.length > 0) this.desktop.ensure();
    const headers = req.subprotocol ? { 'sec-websocket-protocol': req.subprotocol } : undefined;
    return new Response(null, { status: 101, webSocket: pair[0], headers });
  }

  /** Events of a watch from the agent, to its socket. */
  onEvents(watchId: string, events: ComputerEvent[]): void {
    for (const ws of this.ctx.getWebSockets(tagOf(watchId))) {
      for (const e of events) sendFrame(ws, e.type, e.data, e.timestamp);
    }
  }

  isEventsSocket(ws: WebSocket): boolean {
    return this.ctx.getTags(ws).includes(TAG);
  }

  /** The client went: its watch ends. */
  async onClose(ws: WebSocket): Promise<void> {
    const a = ws.deserializeAttachment() as WatchAttachment | null;
    if (a?.kind === 'events' && this.link.socket()) await this.link.request('watch.stop', { watch_id: a.watch_id }, 10_000);
  }

  /** A (re)attached agent: every open socket's watch starts again (events in between are not replayed). */
  async agentResumed(): Promise<void> {
    await Promise.all(
      this.sockets().map(async (ws) => {
        const a = ws.deserializeAttachment() as WatchAttachment;
        const r = await this.start(a.watch_id, a.producers);
        if (!r.ok) closeSocket(ws, 1011, `the watch could not start again: ${r.message}`);
      }),
    );
    // After an eviction the desktop's loop is gone with the object's memory: start it again.
    if (DESKTOP_PRODUCERS.some((p) => this.ctx.getWebSockets(desktopTag(p)).length > 0)) this.desktop.ensure();
  }

  /** The computer stopped or restarted: its watches are gone, and so are these sockets. */
  closeAll(reason: string): void {
    for (const ws of this.sockets()) closeSocket(ws, CLOSE_STOPPED, reason);
    this.desktop.stop();
  }

  private sockets(): WebSocket[] {
    return this.ctx.getWebSockets(TAG).filter((ws) => ws.readyState === WebSocket.OPEN);
  }

  private async start(watchId: string, producers: WatchProducers): Promise<Result<WatchStarted>> {
    if (Object.keys(producers).length === 0) return { ok: true, value: { unavailable: [] } };
    return agentTooOld(this.link, WATCH_MINOR, 'events from inside computers') ?? this.link.request('watch.start', { watch_id: watchId, producers }, 30_000);
  }
}
