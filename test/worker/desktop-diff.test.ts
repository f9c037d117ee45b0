/**
 * The window and clipboard producers' rules (durable-objects/desktop/desktop-diff.ts):
 * what one look at the desktop against the next makes into events.
 */
import { describe, expect, it } from 'vitest';
import { MAX_EVENTS_PER_LOOK, diffDesktop, type DesktopLook } from '../../durable-objects/desktop/desktop-diff.ts';
import type { ClipboardState, WindowInfo } from '../../schema/desktop.ts';

const win = (id: string, title: string, focused = false): WindowInfo => ({
  id, title, app: 'Xfce4-terminal', pid: 42, x: 10, y: 20, width: 640, height: 480,
  geometry: { x: 10, y: 20, width: 640, height: 480 }, focused, minimized: false,
});
const clip = (sha: string, text?: string, bytes = text?.length ?? 0): ClipboardState => ({ sha256: sha.repeat(64).slice(0, 64), bytes, truncated: bytes > 65536, text });
const look = (windows: WindowInfo[], clipboard: ClipboardState | null = null): DesktopLook => ({ windows, clipboard });
const types = (prev: DesktopLook, next: DesktopLook) => diffDesktop(prev, next).map((e) => [e.type, e.data.id ?? e.data.text]);

describe('desktop diff', () => {
  it('the same look twice is no event', () => {
    const l = look([win('1', 'a', true), win('2', 'b')], clip('a', 'x'));
    expect(diffDesktop(l, structuredClone(l))).toEqual([]);
  });

  it('a new focused window is opened, then focused, with the window list’s fields', () => {
    const events = diffDesktop(look([win('1', 'a', true)]), look([win('1', 'a'), win('2', 'Terminal', true)]));
    expect(events.map((e) => e.type)).toEqual(['window.opened', 'window.focused']);
    expect(events[0]).toEqual({ producer: 'window', type: 'window.opened', data: win('2', 'Terminal', true) });
    expect(events[1].data).toMatchObject({ id: '2', title: 'Terminal', app: 'Xfce4-terminal', geometry: { x: 10, y: 20, width: 640, height: 480 }, focused: true });
  });

  it('a window gone is closed as last seen (not focused); focus moving to another is focused', () => {
    const events = diffDesktop(look([win('1', 'a'), win('2', 'b', true)]), look([win('1', 'a', true)]));
    expect(events.map((e) => [e.type, e.data.id])).toEqual([['window.closed', '2'], ['window.focused', '1']]);
    expect(events[0].data).toMatchObject({ title: 'b', focused: false });
  });

  it('a new title is title_changed with the previous one; losing focus to nothing is no event', () => {
    const events = diffDesktop(look([win('1', 'old', true)]), look([win('1', 'new')]));
    expect(events).toEqual([{ producer: 'window', type: 'window.title_changed', data: { ...win('1', 'new'), previous_title: 'old' } }]);
  });

  it('the clipboard: new text is changed with its length and truncation; the same text again, or no text, is not', () => {
    const w = [win('1', 'a', true)];
    expect(diffDesktop(look(w, null), look(w, clip('a', 'hello')))).toEqual([
      { producer: 'clipboard', type: 'clipboard.changed', data: { text: 'hello', bytes: 5, truncated: false } },
    ]);
    expect(types(look(w, clip('a', 'hello')), look(w, clip('b', 'big', 70_000)))).toEqual([['clipboard.changed', 'big']]);
    // The daemon leaves out the text of a hash the caller has: same hash, no event.
    expect(diffDesktop(look(w, clip('b', 'x')), look(w, clip('b')))).toEqual([]);
    expect(diffDesktop(look(w, clip('b', 'x')), look(w, null))).toEqual([]);
    expect(diffDesktop(look(w, null), look(w, clip('c', 'big', 70_000)))[0].data).toEqual({ text: 'big', bytes: 70_000, truncated: true });
  });

  it('a burst is bounded: at most MAX_EVENTS_PER_LOOK events, the last window one events.dropped with the count; the clipboard is kept', () => {
    const many = Array.from({ length: 500 }, (_, i) => win(String(i + 10), `w${i}`));
    const events = diffDesktop(look([]), look(many, clip('d', 'copied')));
    expect(events).toHaveLength(MAX_EVENTS_PER_LOOK);
    expect(events.at(-1)).toMatchObject({ type: 'clipboard.changed', data: { text: 'copied' } });
    expect(events.at(-2)).toEqual({ producer: 'window', type: 'events.dropped', data: { count: 500 - (MAX_EVENTS_PER_LOOK - 2) } });
    expect(events.slice(0, -2).every((e) => e.type === 'window.opened')).toBe(true);
    expect(diffDesktop(look([]), look(many))).toHaveLength(MAX_EVENTS_PER_LOOK);
  });
});
