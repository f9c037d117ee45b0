/**
 * The events socket's `window` and `clipboard` producers. While an open
 * socket asks for either, the ComputerObject looks at the desktop every
 * LOOK_MS (the desktop daemon's `state`: the windows with their focus, and the
 * clipboard's text when a socket asks for it) and sends what changed since the
 * last look (desktop-diff.ts) to the sockets that asked for it. One loop
 * serves every socket of the computer; it ends when the last such socket goes.
 *
 * Each socket hears `producer.started` for each of the two once the desktop
 * answers (its first look is the baseline: what is already open is no
 * event), and `producer.unavailable` with the reason while it cannot be
 * looked at: the desktop is still coming up, or cannot (its programs were
 * removed). Looking goes on every RETRY_MS meanwhile, and the producer starts
 * when the desktop comes up (`producer.started` again after an outage);
 * changes while it was away are not replayed. Asking for these producers is a
 * use of the desktop: under DESKTOP_START=first-use it starts it.
 */
import type { DesktopState } from '../../schema/desktop.ts';
import type { DaemonAnswer } from '../desktop/daemon-connection.ts';
import type { DesktopResult } from '../desktop/desktop-daemon.ts';
import { diffDesktop, type DesktopLook, type DesktopProducer } from '../desktop/desktop-diff.ts';
import { sendFrame } from './socket-frame.ts';

export const DESKTOP_PRODUCERS: readonly DesktopProducer[] = ['window', 'clipboard'];
/** Between looks while the desktop answers. */
export const LOOK_MS = 300;
/** Between looks while it does not. */
export const RETRY_MS = 2_000;
/** How long one look waits for a desktop that is starting (the daemon's call retries within it). */
const LOOK_WAIT_MS = 2_000;
const LOOK_TIMEOUT_MS = 10_000;

/** The tag of sockets that asked for a desktop producer. */
export const desktopTag = (p: DesktopProducer) => `events-desktop:${p}`;

/** Asks the daemon for a look (`state`), waiting at most `waitMs` for a desktop that is starting. */
export type LookAtDesktop = (args: { clipboard: boolean; known_sha256?: string }, timeoutMs: number, waitMs: number) => Promise<DesktopResult<DaemonAnswer>>;

type Told = 'producer.started' | 'producer.unavailable';
/** What a socket was last told about each producer (kept in its attachment, so each change is said once). */
interface Telling {
  desktop_told?: Partial<Record<DesktopProducer, Told>>;
}

export class DesktopProducers {
  private running = false;
  /** Counts stops, so a look still in flight when the loop stopped (and maybe started again) ends its old loop. */
  private generation = 0;
  private last: { look: DesktopLook; clipboardWatched: boolean } | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly lookAt: LookAtDesktop,
  ) {}

  /** A socket asking for window or clipboard is open (or the object woke with some): looking starts unless it runs. */
  ensure(): void {
    if (this.running) return;
    this.running = true;
    this.later(0);
  }

  /** The computer stopped: the sockets are closed; the loop ends and forgets its last look. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.running = false;
    this.last = null;
    this.generation++;
  }

  private subscribers(p: DesktopProducer): WebSocket[] {
    return this.ctx.getWebSockets(desktopTag(p)).filter((ws) => ws.readyState === WebSocket.OPEN);
  }

  private later(ms: number): void {
    const generation = this.generation;
    this.timer = setTimeout(() => {
      this.timer = null;
      const go = (next: number | null) => {
        if (generation !== this.generation) return;
        if (next === null) this.stop();
        else this.later(next);
      };
      this.tick().then(go, () => go(RETRY_MS));
    }, ms);
  }

  /** One look; answers when to look again, null when nobody asks any more. */
  private async tick(): Promise<number | null> {
    const subs = { window: this.subscribers('window'), clipboard: this.subscribers('clipboard') };
    if (subs.window.length === 0 && subs.clipboard.length === 0) return null;
    const clipboard = subs.clipboard.length > 0;
    const known = this.last?.look.clipboard?.sha256;
    const generation = this.generation;
    const r = await this.lookAt({ clipboard, ...(known && { known_sha256: known }) }, LOOK_TIMEOUT_MS, LOOK_WAIT_MS);
    if (generation !== this.generation) return null;
    if (!r.ok) {
      this.last = null;
      const reason =
        r.code === 'DESKTOP_STARTING'
          ? 'the desktop is not up yet; its events start when it is'
          : r.code === 'VALIDATION_FAILED'
            ? // A daemon that does not know `state` (desktop protocol 1.0, an older host's guest mount).
              `the desktop daemon on this computer's host is too old for window and clipboard events (${r.message})`
            : `the desktop cannot be looked at (${r.message}); its events start when it can`;
      for (const p of DESKTOP_PRODUCERS) for (const ws of subs[p]) this.tell(ws, p, 'producer.unavailable', reason);
      return RETRY_MS;
    }
    const state = r.value.data as DesktopState;
    const next: DesktopLook = { windows: state.windows, clipboard: clipboard ? (state.clipboard ?? null) : null };
    const prev = this.last;
    this.last = { look: next, clipboardWatched: clipboard };
    if (prev) {
      // A clipboard nobody watched last time is a baseline now, not a change.
      const base = prev.clipboardWatched ? prev.look : { ...prev.look, clipboard: next.clipboard };
      for (const e of diffDesktop(base, next)) for (const ws of subs[e.producer]) if (this.toldOf(ws, e.producer) === 'producer.started') sendFrame(ws, e.type, e.data);
    }
    for (const ws of subs.window) this.tell(ws, 'window', 'producer.started');
    for (const ws of subs.clipboard) {
      if (state.clipboard_error) this.tell(ws, 'clipboard', 'producer.unavailable', state.clipboard_error);
      else this.tell(ws, 'clipboard', 'producer.started');
    }
    return LOOK_MS;
  }

  private toldOf(ws: WebSocket, p: DesktopProducer): Told | undefined {
    return (ws.deserializeAttachment() as Telling | null)?.desktop_told?.[p];
  }

  private tell(ws: WebSocket, producer: DesktopProducer, what: Told, reason?: string): void {
    const a = (ws.deserializeAttachment() as Telling | null) ?? {};
    if (a.desktop_told?.[producer] === what) return;
    ws.serializeAttachment({ ...a, desktop_told: { ...a.desktop_told, [producer]: what } });
    sendFrame(ws, what, reason === undefined ? { producer } : { producer, reason });
  }
}
