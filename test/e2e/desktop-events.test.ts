/**
 * The events socket's window and clipboard producers on a real desktop
 * computer: a terminal launched through the desktop API arrives as opened and
 * focused, with the fields GET …/desktop/windows gives, and retitled; text put on the
 * clipboard inside the computer arrives with its length, a long one cut at
 * 64 KiB; the terminal closing arrives as closed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';
import { EventsSocket } from './sockets.ts';
import { until } from '../until.ts';

let api: Client;
let id: string;

interface Win {
  id: string;
  title: string;
  app: string | null;
  focused: boolean;
}

beforeAll(async () => {
  api = await newTenant('desktop-events');
  id = await api.runningComputer('desktop-events');
  await until('the desktop to answer', async () => (await api.get(`/computers/${id}/desktop/windows`)).status === 200, 120_000, 500);
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
});

/** Puts text on the desktop's clipboard from inside, as a program of the user would (xclip stays behind as its owner). */
async function copy(shellText: string): Promise<void> {
  const r = await api.exec(id, `${shellText} > /tmp/clip.txt && DISPLAY=:0 setsid -f xclip -selection clipboard -i /tmp/clip.txt >/dev/null 2>&1`);
  expect(r.body.exit_code, r.body.output).toBe(0);
}

/** A desktop in a VM under software emulation reacts slowly: generous waits, no timing. */
const WAIT_MS = 120_000;

describe('window and clipboard events of a real desktop', () => {
  it('a launched terminal is opened and focused, its new title title_changed; copied text is clipboard.changed (cut at 64 KiB); the closed terminal is closed', async () => {
    const s = await EventsSocket.open(api, id, 'subscribe=window,clipboard');
    await s.until((f) => f.type === 'producer.started' && f.data.producer === 'window', WAIT_MS);
    await s.until((f) => f.type === 'producer.started' && f.data.producer === 'clipboard', WAIT_MS);
    expect(s.frames.filter((f) => f.type === 'producer.unavailable')).toEqual([]);

    const launched = await api.post<{ window: Win }>(`/computers/${id}/desktop/launch`, { app: 'terminal', wait_for_window: true });
    expect(launched.status, JSON.stringify(launched.body)).toBe(200);
    const win = launched.body.window;
    const opened = await s.until((f) => f.type === 'window.opened' && f.data.id === win.id, WAIT_MS);
    expect(opened.data).toMatchObject({ id: win.id, app: win.app, title: expect.any(String), geometry: { width: expect.any(Number), height: expect.any(Number) } });
    const focused = await s.until((f) => f.type === 'window.focused' && f.data.id === win.id, WAIT_MS);
    expect(focused.data).toMatchObject({ id: win.id, focused: true });
    expect(opened.timestamp).toMatch(/Z$/);

    // The shell in it sets its title (an xterm escape), and keeps it a moment before its prompt sets its own.
    const typed = await api.post(`/computers/${id}/desktop/type`, { text: "printf '\\033]0;events-title\\007'; sleep 3\n" });
    expect(typed.status, JSON.stringify(typed.body)).toBe(200);
    const retitled = await s.until((f) => f.type === 'window.title_changed' && f.data.id === win.id && String(f.data.title).endsWith('events-title'), WAIT_MS);
    expect(retitled.data.previous_title).toEqual(expect.stringMatching(/^Terminal/));
    expect(retitled.data.previous_title).not.toMatch(/events-title$/);

    const text = 'hello from the clipboard ✓';
    await copy(`printf %s '${text}'`);
    const changed = await s.until((f) => f.type === 'clipboard.changed', WAIT_MS);
    expect(changed.data).toEqual({ text, bytes: Buffer.byteLength(text), truncated: false });

    await copy(`head -c 70000 /dev/zero | tr '\\0' x`);
    const long = await s.until((f) => f.type === 'clipboard.changed' && f.data.bytes === 70_000, WAIT_MS);
    expect(long.data.truncated).toBe(true);
    expect(long.data.text).toBe('x'.repeat(64 * 1024));

    const mark = s.frames.length;
    expect((await api.exec(id, 'pkill -x xfce4-terminal')).body.exit_code).toBe(0);
    await s.until((f) => f.type === 'window.closed' && f.data.id === win.id, WAIT_MS, mark);
    s.ws.close();
  }, 900_000);
});
