/**
 * The events socket's window and clipboard producers compare one look at the
 * desktop with the next; what changed between them is the events. Looks are
 * a few hundred milliseconds apart, so changes within one interval coalesce:
 * a title that changed twice is one title_changed with the last title, a
 * window that opened and closed in between is never seen, the same text
 * copied again is no change. Pure: the rules are tested without a desktop.
 */
import type { ClipboardState, WindowInfo } from '../../schema/desktop.ts';

export type DesktopProducer = 'window' | 'clipboard';
export const DESKTOP_EVENT_TYPES = ['window.opened', 'window.closed', 'window.focused', 'window.title_changed', 'clipboard.changed'] as const;

/** One look: the windows (focus included), and the clipboard's text when it is watched (null: no text). */
export interface DesktopLook {
  windows: WindowInfo[];
  clipboard: ClipboardState | null;
}

export interface DesktopEvent {
  producer: DesktopProducer;
  type: (typeof DESKTOP_EVENT_TYPES)[number] | 'events.dropped';
  data: Record<string, unknown>;
}

/** At most this many events from one look; a burst beyond ends with one events.dropped (as the file producer's batches do). */
export const MAX_EVENTS_PER_LOOK = 200;

const focusedOf = (windows: WindowInfo[]) => windows.find((w) => w.focused) ?? null;

/** The events that take `prev` to `next`, closed windows first, then opened, retitled, focused, and the clipboard. */
export function diffDesktop(prev: DesktopLook, next: DesktopLook): DesktopEvent[] {
  const before = new Map(prev.windows.map((w) => [w.id, w]));
  const after = new Map(next.windows.map((w) => [w.id, w]));
  const out: DesktopEvent[] = [];
  const win = (type: DesktopEvent['type'], data: Record<string, unknown>) => out.push({ producer: 'window', type, data });
  for (const w of prev.windows) if (!after.has(w.id)) win('window.closed', { ...w, focused: false });
  for (const w of next.windows) if (!before.has(w.id)) win('window.opened', { ...w });
  for (const w of next.windows) {
    const old = before.get(w.id);
    if (old && old.title !== w.title) win('window.title_changed', { ...w, previous_title: old.title });
  }
  const focused = focusedOf(next.windows);
  if (focused && focused.id !== focusedOf(prev.windows)?.id) win('window.focused', { ...focused });
  const clip = next.clipboard;
  // A clipboard that lost its text (its owner went away) is no event; text comes with every new hash.
  if (clip && clip.sha256 !== prev.clipboard?.sha256 && clip.text !== undefined) {
    out.push({ producer: 'clipboard', type: 'clipboard.changed', data: { text: clip.text, bytes: clip.bytes, truncated: clip.truncated } });
  }
  if (out.length <= MAX_EVENTS_PER_LOOK) return out;
  // The clipboard's event is never the one dropped: it is at most one, and the last.
  const clipEvent = out[out.length - 1].producer === 'clipboard' ? out.pop()! : null;
  const kept = out.slice(0, MAX_EVENTS_PER_LOOK - 1 - (clipEvent ? 1 : 0));
  kept.push({ producer: 'window', type: 'events.dropped', data: { count: out.length - kept.length } });
  return clipEvent ? [...kept, clipEvent] : kept;
}
