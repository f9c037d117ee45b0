/**
 * The desktop control API end to end: a real computer with its Xfce desktop
 * (Xvnc inside), driven through the Worker and its ComputerObject, over the
 * relay to the desktop daemon in the computer; results read back through the
 * API (screenshots, windows, cursor) and through exec (files the desktop's
 * programs wrote).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';
import { changedPixels, decodePng, gridColours, pngSize } from './png.ts';
import { until } from '../until.ts';
import { ISOLATION } from './isolation-under-test.ts';

let api: Client;
let id: string;

async function screenshot(path = `/computers/${id}/desktop/screenshot`): Promise<{ status: number; type: string; bytes: Uint8Array }> {
  const r = await fetch(api.apiUrl + path, { headers: { authorization: `Bearer ${api.key}` } });
  return { status: r.status, type: r.headers.get('content-type') ?? '', bytes: new Uint8Array(await r.arrayBuffer()) };
}

const desk = (p: string) => `/computers/${id}/desktop/${p}`;


interface Win {
  id: string;
  pid: number | null;
  title: string;
  app: string | null;
  focused: boolean;
  width: number;
  height: number;
}

const windows = async () => (await api.get<{ windows: Win[]; data: Win[] }>(desk('windows'))).body;

/** A terminal window, launched and focused. */
async function terminal(): Promise<Win> {
  const r = await api.post<{ pid: number; window: Win }>(desk('launch'), { app: 'terminal', wait_for_window: true });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  const win = r.body.window;
  // The window is the launched process's own: a terminal that handed the launch to a running one could
  // open a second window a moment later, which would take the focus and the keys typed next.
  expect(win.pid, JSON.stringify(r.body)).toBe(r.body.pid);
  await until('the terminal to have focus', async () => (await windows()).windows.find((w) => w.id === win.id && w.focused), DESKTOP_UP_MS);
  return win;
}

/** Types a command into the focused terminal and waits for the file it writes; returns its content. */
async function typeAndRead(command: string, file: string): Promise<string> {
  const typed = await api.post(desk('type'), { text: `${command}\n` });
  expect(typed.status, JSON.stringify(typed.body)).toBe(200);
  return until(`${file} to be written`, async () => {
    const r = await api.exec(id, `cat ${file} 2>/dev/null`);
    return r.body.output ? r.body.output : null;
  });
}

/** How long a desktop may take to come up: a VM on a host that emulates its CPU starts Xfce in a minute or more. */
const DESKTOP_UP_MS = ISOLATION === 'vm' ? 300_000 : 90_000;
/** How long a launched app may take to show its window: an emulated firefox took about five minutes. */
const APP_WINDOW_MS = ISOLATION === 'vm' ? 300_000 : 120_000;
/** Tests that wait for a desktop to start or an app's window (a terminal too: on a VM its first start took minutes) get this long. */
const SLOW_TEST_MS = ISOLATION === 'vm' ? 600_000 : 180_000;

/**
 * CI's VM run (HANGAR_E2E_VM_QUICK=1, `npm run test:e2e:vm:subset`) leaves out the tests marked with this:
 * on an emulated VM they cost minutes (firefox's start, a second VM's boot and desktop) or repeat what
 * other VM files already cover (a VM's stop and start) with desktop code that is the same on both drivers.
 * They run on sandboxes in CI and on VMs in `npm run test:e2e:vm`.
 */
const notInCiOnVm = ISOLATION === 'vm' && process.env.HANGAR_E2E_VM_QUICK === '1' ? it.skip : it;

/**
 * Waits for a computer's desktop to be up as a client would, taking 503 DESKTOP_STARTING (with
 * Retry-After) as "not yet". A VM on an emulating host starts its desktop on first use, so there the
 * first desktop call starts it (test/worker/desktop-start-policy.test.ts); elsewhere it is up already.
 */
async function desktopUp(computer = id): Promise<void> {
  // A drawn screen, not screen-size: the X server answers that (and a screenshot) before the session has painted.
  await until(`the desktop of ${computer} to be drawn`, async () => {
    const r = await screenshot(`/computers/${computer}/desktop/screenshot`);
    const said = Buffer.from(r.bytes).toString('utf8', 0, 300);
    if (r.status === 503 && said.includes('DESKTOP_STARTING')) return null;
    expect(r.status, said).toBe(200);
    return gridColours(decodePng(r.bytes)) > 3 ? true : null;
  }, DESKTOP_UP_MS);
}

beforeAll(async () => {
  api = await newTenant('desktop-api');
  id = await api.runningComputer('desktop-api');
  if (ISOLATION === 'vm') await desktopUp();
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
});

describe('the desktop control API, end to end', () => {
  // With DESKTOP_START unset, a VM on a host that emulates its CPU starts its desktop on first use instead (test/worker/desktop-start-policy.test.ts).
  it.skipIf(ISOLATION === 'vm')('the desktop starts with the computer (DESKTOP_START unset: boot): before any desktop call, its X server and session run as user', async () => {
    const ps = await until('the desktop to be started', async () => {
      const r = await api.exec(id, 'ps -o user=,comm= -C Xvnc -C xfce4-session');
      return /Xvnc/.test(r.body.output) && /xfce4-session/.test(r.body.output) ? r.body.output : null;
    });
    expect(ps).toMatch(/^user\s+Xvnc$/m);
    expect(ps).toMatch(/^user\s+xfce4-session$/m);
  });

  it('a screenshot is a PNG of the whole 1280x720 screen; screenshot-region and the base64 form have the size asked for', async () => {
    // Xfce's processes run before it has painted (on a slow machine, for a while): wait for a drawn screen as a client would.
    await desktopUp();
    const full = await screenshot();
    expect(full.status).toBe(200);
    expect(full.type).toBe('image/png');
    expect(pngSize(full.bytes)).toEqual({ width: 1280, height: 720 });
    // The desktop is drawn, not a blank frame: the panel and the background differ.
    expect(gridColours(decodePng(full.bytes))).toBeGreaterThan(3);

    const region = await api.raw('POST', desk('screenshot-region'), { body: JSON.stringify({ x: 100, y: 50, width: 320, height: 200 }), headers: { 'content-type': 'application/json' } });
    expect(region.status).toBe(200);
    const b64 = await api.post<{ format: string; width: number; height: number; base64: string }>(desk('screenshot-region'), { x: 10, y: 20, width: 64, height: 48, format: 'base64' });
    expect(b64.body).toMatchObject({ format: 'png', width: 64, height: 48 });
    expect(pngSize(Buffer.from(b64.body.base64, 'base64'))).toEqual({ width: 64, height: 48 });
    const json = await api.get<{ width: number; height: number; base64: string }>(`${desk('screenshot')}?format=base64`);
    expect(pngSize(Buffer.from(json.body.base64, 'base64'))).toEqual({ width: 1280, height: 720 });
    const byQuery = await screenshot(`${desk('screenshot')}?x=0&y=0&width=200&height=100`);
    expect(pngSize(byQuery.bytes)).toEqual({ width: 200, height: 100 });
  });

  it('launch a terminal, type a command with non-ASCII text, and exec reads the file it wrote; windows and cursor reflect it', async () => {
    const before = (await windows()).windows.length;
    const win = await terminal();
    // The launch answers once the window exists; the window manager may focus it a moment later (terminal() waits for that).
    expect(win).toMatchObject({ app: 'Xfce4-terminal' });
    const text = 'héllo wörld — ünïcödé ✓ 日本語 😀';
    expect(await typeAndRead(`printf '%s\\n' '${text}' > /tmp/desktop-typed.txt`, '/tmp/desktop-typed.txt')).toBe(`${text}\n`);

    const listed = await windows();
    expect(listed.windows.length).toBe(before + 1);
    expect(listed.data).toEqual(listed.windows);
    expect(listed.windows.find((w) => w.id === win.id)).toMatchObject({ focused: true, app: 'Xfce4-terminal' });
    expect(listed.windows.find((w) => w.id === win.id)?.title).toMatch(/Terminal/);

    const moved = await api.post(desk('move'), { x: 321, y: 234 });
    expect(moved.body).toMatchObject({ success: true, cursor: { x: 321, y: 234 } });
    expect((await api.get(desk('cursor'))).body).toEqual({ x: 321, y: 234 });
  }, SLOW_TEST_MS);

  it('text with more distinct characters the layout lacks than there are spare keycodes, typed while the terminal reads nothing: each arrives as itself', async () => {
    await terminal();
    // 40 CJK characters: the spare keycodes (about 9 under Xvnc) are bound to new symbols several times over.
    const text = Array.from({ length: 40 }, (_, i) => String.fromCodePoint(0x4e00 + i * 7)).join('');
    // The terminal is stopped for 3 s: it reads the presses only then, so a keycode rebound by the clock
    // alone would reach it with a newer symbol (keyboard.py asks the application instead: fence.py).
    const stop = await api.exec(id, 'pkill -STOP -x xfce4-terminal && ps -o stat= -C xfce4-terminal; (sleep 3; pkill -CONT -x xfce4-terminal) >/dev/null 2>&1 &');
    expect(stop.body.output).toMatch(/^T/m);
    expect(await typeAndRead(`printf '%s\\n' '${text}' > /tmp/desktop-stopped.txt`, '/tmp/desktop-stopped.txt')).toBe(`${text}\n`);
  }, SLOW_TEST_MS);

  it('key combinations: a command typed without Enter runs on `key: Return`; `keys` and hotkey press several at once', async () => {
    await terminal();
    expect((await api.post(desk('type'), { text: 'echo keys-$((6*7)) > /tmp/desktop-keys.txt' })).status).toBe(200);
    expect((await api.post(desk('key'), { key: 'Return' })).body).toMatchObject({ success: true, pressed: ['Return'] });
    expect(await until('the key file', async () => (await api.exec(id, 'cat /tmp/desktop-keys.txt 2>/dev/null')).body.output)).toBe('keys-42\n');
    // ctrl+u erases the line typed so far, so only what follows it runs.
    await api.post(desk('type'), { text: 'echo wrong > /tmp/desktop-combo.txt' });
    expect((await api.post(desk('hotkey'), { keys: ['ctrl', 'u'] })).status).toBe(200);
    expect(await typeAndRead('echo right > /tmp/desktop-combo.txt', '/tmp/desktop-combo.txt')).toBe('right\n');
  }, SLOW_TEST_MS);

  it('an action can answer with a fresh screenshot of what it did', async () => {
    await terminal();
    const before = decodePng((await screenshot()).bytes);
    const r = await api.post<{ success: boolean; screenshot: { width: number; height: number; base64: string } }>(desk('type'), {
      text: 'echo a-screenshot-in-the-same-call',
      screenshot: { delay_ms: 500 },
    });
    expect(r.status).toBe(200);
    expect(r.body.screenshot).toMatchObject({ width: 1280, height: 720 });
    const after = decodePng(Buffer.from(r.body.screenshot.base64, 'base64'));
    expect(changedPixels(before, after)).toBeGreaterThan(100);
    await api.post(desk('key'), { key: 'ctrl+u' });
  }, SLOW_TEST_MS);

  it('pointer actions move the pointer where they say and answer with it', async () => {
    const cases: Array<[string, Record<string, unknown>, { x: number; y: number }]> = [
      ['click', { x: 700, y: 650, button: 'left' }, { x: 700, y: 650 }],
      ['double-click', { x: 710, y: 640 }, { x: 710, y: 640 }],
      ['right-click', { x: 720, y: 630 }, { x: 720, y: 630 }],
      ['scroll', { x: 730, y: 620, direction: 'down', amount: 2 }, { x: 730, y: 620 }],
      ['scroll', { x: 731, y: 621, direction: 'up', clicks: 1 }, { x: 731, y: 621 }],
      ['drag', { start_x: 600, start_y: 600, end_x: 650, end_y: 610 }, { x: 650, y: 610 }],
      ['drag', { from_x: 650, from_y: 610, to_x: 640, to_y: 600 }, { x: 640, y: 600 }],
      ['mouse-down', { x: 620, y: 590 }, { x: 620, y: 590 }],
      ['mouse-up', {}, { x: 620, y: 590 }],
    ];
    for (const [action, body, at] of cases) {
      const r = await api.post(desk(action), body);
      expect(r.status, `${action}: ${JSON.stringify(r.body)}`).toBe(200);
      expect(r.body, action).toMatchObject({ success: true, cursor: at });
    }
    // Escape closes whatever menu the right click opened.
    await api.post(desk('key'), { key: 'Escape' });
    const waited = await api.post(desk('wait'), { seconds: 0.2 });
    expect(waited.body).toMatchObject({ success: true, waited_ms: 200 });
    expect((await api.post(desk('wait'), { ms: 100 })).body).toMatchObject({ waited_ms: 100 });
  });

  it('window/focus brings an earlier window back to the front', async () => {
    const first = await terminal();
    const second = await terminal();
    expect(second.id).not.toBe(first.id);
    const r = await api.post(desk('window/focus'), { window_id: first.id });
    expect(r.body).toMatchObject({ success: true, window_id: first.id, focused: true });
    expect((await windows()).windows.find((w) => w.focused)?.id).toBe(first.id);
    // Numbers are window ids too (the Elixir SDK sends them so).
    expect((await api.post(desk('window/focus'), { window_id: Number(second.id) })).body).toMatchObject({ focused: true });
    const gone = await api.post(desk('window/focus'), { window_id: '12345' });
    expect(gone.status).toBe(404);
    expect(gone.body).toMatchObject({ error: { code: 'WINDOW_NOT_FOUND' } });
  }, SLOW_TEST_MS);

  it('off-screen coordinates, unknown keys, unknown apps and bad bodies are 4xx in the envelope and change nothing', async () => {
    const cursor = (await api.get(desk('cursor'))).body;
    const bad: Array<[string, unknown, number, RegExp]> = [
      ['click', { x: 1280, y: 10 }, 400, /x must be between 0 and 1279/],
      ['move', { x: 10, y: 720 }, 400, /y must be between 0 and 719/],
      ['click', { x: -1, y: 10 }, 400, /x/],
      ['click', { x: 10 }, 400, /both x and y/],
      ['screenshot-region', { x: 1200, y: 0, width: 100, height: 10 }, 400, /width/],
      ['key', { key: 'ctrl+nosuchkey' }, 400, /unknown key 'nosuchkey'/],
      ['key', {}, 400, /key/],
      ['type', { text: '' }, 400, /text/],
      ['scroll', { direction: 'sideways' }, 400, /direction/],
      ['launch', { app: 'no-such-program-here' }, 404, /no program/],
      ['launch', {}, 400, /app/],
      ['drag', { start_x: 1 }, 400, /start_x/],
      ['wait', { seconds: 1000 }, 400, /seconds/],
    ];
    for (const [action, body, status, message] of bad) {
      const r = await api.post<{ error: { code: string; message: string } }>(desk(action), body);
      expect(r.status, `${action} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`).toBe(status);
      expect(r.body.error.message).toMatch(message);
    }
    expect((await api.get(desk('cursor'))).body).toEqual(cursor);
  });

  notInCiOnVm('a computer created with a resolution has a desktop of that size', async () => {
    const small = await api.runningComputer('desktop-small', { resolution: '1024x768' });
    try {
      if (ISOLATION === 'vm') await desktopUp(small);
      expect((await api.get(`/computers/${small}`)).body).toMatchObject({ resolution: '1024x768' });
      expect((await api.get(`/computers/${small}/desktop/screen-size`)).body).toEqual({ width: 1024, height: 768 });
      expect(pngSize((await screenshot(`/computers/${small}/desktop/screenshot`)).bytes)).toEqual({ width: 1024, height: 768 });
      expect((await api.post(`/computers/${small}/desktop/click`, { x: 1024, y: 10 })).status).toBe(400);
    } finally {
      await api.del(`/computers/${small}`);
    }
  }, SLOW_TEST_MS);

  it('screen-size and environment describe the desktop', async () => {
    expect((await api.get(desk('screen-size'))).body).toEqual({ width: 1280, height: 720 });
    expect((await api.get(desk('environment'))).body).toMatchObject({ name: 'xfce', session_type: 'x11', resolution: '1280x720', ready: true });
  });

  notInCiOnVm('the browser shows a page and the file manager a folder: each opens a window titled with what it shows', async () => {
    const made = await api.exec(id, `mkdir -p /tmp/fm-shown-dir && printf '<title>hangar-page-shown</title><p>hi' > /tmp/desktop-page.html && chmod -R a+rX /tmp/fm-shown-dir /tmp/desktop-page.html`);
    expect(made.body.exit_code).toBe(0);
    const browser = await api.post(desk('launch'), { app: 'browser file:///tmp/desktop-page.html' });
    expect(browser.status, JSON.stringify(browser.body)).toBe(200);
    // The title is the page's own: the browser started, loaded the file and rendered its head.
    const page = await until('the browser window titled with the page', async () => (await windows()).windows.find((w) => /hangar-page-shown/.test(w.title)), APP_WINDOW_MS);
    expect(page.app).toMatch(/firefox/i);
    const files = await api.post(desk('launch'), { app: 'files /tmp/fm-shown-dir' });
    expect(files.status, JSON.stringify(files.body)).toBe(200);
    const folder = await until('the file manager window titled with the folder', async () => (await windows()).windows.find((w) => /fm-shown-dir/.test(w.title)), APP_WINDOW_MS);
    expect(folder.app).toMatch(/thunar/i);
    // Left open: the next test stops the computer, which closes them.
  }, SLOW_TEST_MS);

  notInCiOnVm('a stopped computer answers 409; started again, its desktop is back by itself', async () => {
    expect((await api.post(`/computers/${id}/stop`)).status).toBe(200);
    const r = await api.get<{ error: { code: string } }>(desk('cursor'));
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('COMPUTER_NOT_RUNNING');
    expect((await screenshot()).status).toBe(409);
    expect((await api.post(`/computers/${id}/start`)).status).toBe(200);
    // A VM on an emulating host starts it again on first use instead.
    if (ISOLATION === 'vm') await desktopUp();
    const shot = await screenshot();
    expect(shot.status).toBe(200);
    expect(pngSize(shot.bytes)).toEqual({ width: 1280, height: 720 });
  }, SLOW_TEST_MS);

  notInCiOnVm('while the desktop cannot come up the API answers 503 with Retry-After, and it comes back by itself', async () => {
    // The X server cannot start (as if it were broken), and the running desktop is gone.
    const broke = await api.exec(id, 'sudo chmod 000 /usr/bin/Xvnc && pkill -KILL -u user -f "[d]esktop.py|[X]vnc|[x]fce4" ; true');
    expect(broke.status).toBe(200);
    const r = await api.get<{ error: { code: string; message: string } }>(desk('cursor'));
    expect(r.status, JSON.stringify(r.body)).toBe(503);
    expect(r.body.error.code).toBe('DESKTOP_STARTING');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await api.exec(id, 'sudo chmod 755 /usr/bin/Xvnc')).status).toBe(200);
    const back = await until('the desktop to come back', async () => {
      const s = await screenshot();
      return s.status === 200 ? s : null;
    }, DESKTOP_UP_MS);
    expect(pngSize(back.bytes)).toEqual({ width: 1280, height: 720 });
  }, SLOW_TEST_MS);
});
