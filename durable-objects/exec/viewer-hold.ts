/**
 * Holding a process back for its SSE viewers, so they are never outrun: while
 * the owner says a viewer is too far behind, its sink answers `holds()` true,
 * output is stored but not acknowledged, the agent stops sending and the
 * process blocks on its full pipe, as it would writing to a slow terminal.
 * A viewer that takes nothing for STALL_MS while it holds the process is
 * dropped; it may come back with Last-Event-ID.
 */
import { FINAL_READ_CHARS, type LagLimits, type SseHub } from '../sse-hub.ts';
import { MAX_LOG_BYTES } from './event-log.ts';

/** How much a live viewer may have queued (bytes of SSE text, about) before the process is held. */
export const HOLD_CHARS = MAX_LOG_BYTES / 8;
/**
 * The process is held while a live viewer has more than HOLD_CHARS queued, or
 * one catching up from the log is more than a quarter of the hub's final read
 * from the end: with a window in flight it still gets there, and goes live.
 */
export const VIEWER_LIMITS: LagLimits = { live: HOLD_CHARS, catchingUp: FINAL_READ_CHARS / 4 };
/** A viewer holding the process that takes nothing for this long is dropped. */
export const STALL_MS = 10_000;

export class ViewerHold {
  private holding = false;
  private recheck: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly hub: SseHub,
    /** True while the owner wants the process held (a viewer, or the log before the first one, is too far behind). */
    private readonly behind: () => boolean,
    /** Held acknowledgements may go out now. */
    private readonly release: () => void,
  ) {}

  /** A viewer moved: the manager asks holds() again at its next ack (at most every few ms). */
  moved(): void {
    if (this.holding) this.release();
  }

  holds(): boolean {
    // A viewer that took nothing for STALL_MS is gone or stuck; it may come back with Last-Event-ID.
    if (!this.behind() || (this.hub.dropStalled(Date.now() - STALL_MS, VIEWER_LIMITS) > 0 && !this.behind())) {
      this.stop();
      return false;
    }
    this.holding = true;
    // Look again later even if no viewer moves, to drop stalled ones (and to let go when a deadline passes).
    this.recheck ??= setTimeout(() => {
      this.recheck = null;
      this.release();
    }, STALL_MS);
    return true;
  }

  stop(): void {
    this.holding = false;
    if (this.recheck) clearTimeout(this.recheck);
    this.recheck = null;
  }
}
