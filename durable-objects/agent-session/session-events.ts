/**
 * A session's events in the page's shape — `{type, session_id, data,
 * timestamp}` — with every string in `data` masked (secret values become
 * `***`) and the one-terminal-event rule kept here, where every event passes:
 * after `completed`, `failed` or `cancelled` nothing more is emitted.
 */
import { TERMINAL_EVENT_TYPES, type SessionEventType } from '../../schema/api-agents.ts';

export interface SessionEvent {
  type: SessionEventType;
  session_id: string;
  data: Record<string, unknown>;
  timestamp: string;
}

const TERMINAL: ReadonlySet<string> = new Set(TERMINAL_EVENT_TYPES);

/** Masks every string inside `v`, keys left as they are. */
export function maskDeep(v: unknown, mask: (s: string) => string): unknown {
  if (typeof v === 'string') return mask(v);
  if (Array.isArray(v)) return v.map((x) => maskDeep(x, mask));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, maskDeep(x, mask)]));
  return v;
}

export class SessionEvents {
  private ended: boolean;
  private readonly sessionId: string;
  private readonly mask: (s: string) => string;
  private readonly sink: (e: SessionEvent) => void;

  constructor(sessionId: string, mask: (s: string) => string, sink: (e: SessionEvent) => void, ended = false) {
    this.sessionId = sessionId;
    this.mask = mask;
    this.sink = sink;
    this.ended = ended;
  }

  get hasEnded(): boolean {
    return this.ended;
  }

  /** Emits an event unless the session already ended; returns whether it went out. */
  emit(type: SessionEventType, data: Record<string, unknown>, now = new Date()): boolean {
    if (this.ended) return false;
    if (TERMINAL.has(type)) this.ended = true;
    this.sink({ type, session_id: this.sessionId, data: maskDeep(data, this.mask) as Record<string, unknown>, timestamp: now.toISOString() });
    return true;
  }
}
