/**
 * The desktop in a real browser: headless Chromium opens the computer's
 * desktop_url (vnc-credentials), noVNC draws the desktop on its canvas (the
 * test compares its pixels with an API screenshot), the test clicks and types
 * through the page and sees the result through the API, the page reconnects
 * after its connection is dropped, the clipboard crosses both ways, and the
 * page can be embedded in another site's iframe.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Frame, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropAgentSockets } from './agent-control.ts';
import { newTenant, type Client } from './client.ts';
import { decodePng, pixel, type Png } from './png.ts';
import { until } from '../until.ts';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** The page is smaller than the 1280x720 desktop: noVNC scales it down to fit (0.75). */
const VIEWPORT = { width: 960, height: 540 };
const SCALE = VIEWPORT.width / 1280;

let api: Client;
let id: string;
let profile: string;
let browser: BrowserContext;

const desk = (p: string) => `/computers/${id}/desktop/${p}`;

async function apiScreenshot(): Promise<Png> {
  const r = await fetch(`${api.apiUrl}${desk('screenshot')}`, { headers: { authorization: `Bearer ${api.key}` } });
  expect(r.status).toBe(200);
  return decodePng(new Uint8Array(await r.arrayBuffer()));
}

type PageLike = Page | Frame;

// Functions evaluated in the page are given as source text: this file is compiled without the DOM's types.
const state = (p: PageLike) => p.evaluate('document.documentElement.dataset.state') as Promise<string | undefined>;
/**
 * Waits until an expression is true in the page. Polled with evaluate: the page's CSP allows no eval,
 * which waitForFunction with a string would need.
 */
async function pageWait(p: PageLike, expression: string, timeout = 60_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await p.evaluate(expression))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${expression}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const waitState = (p: PageLike, want: string, timeout = 60_000) => pageWait(p, `document.documentElement.dataset.state === ${JSON.stringify(want)}`, timeout);

/** Pixels of the noVNC canvas (the desktop at its own 1280x720), as [r, g, b] at the points asked. */
function canvasPixels(p: PageLike, points: Array<[number, number]>): Promise<Array<[number, number, number]>> {
  return p.evaluate(`(() => {
    const ctx = document.querySelector('#screen canvas').getContext('2d');
    return ${JSON.stringify(points)}.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
  })()`) as Promise<Array<[number, number, number]>>;
}

const GRID: Array<[number, number]> = [];
for (let y = 5; y < 720; y += 45) for (let x = 5; x < 1280; x += 71) GRID.push([x, y]);

/** How many grid points the page's canvas and an API screenshot agree on. */
async function agreement(p: PageLike): Promise<number> {
  const [canvas, shot] = [await canvasPixels(p, GRID), await apiScreenshot()];
  return GRID.filter(([x, y], i) => pixel(shot, x, y).every((v, c) => v === canvas[i][c])).length / GRID.length;
}


/** A page of the window size the tests use (a persistent context sets viewports per page). */
async function newPage(): Promise<Page> {
  const page = await browser.newPage();
  await page.setViewportSize(VIEWPORT);
  return page;
}

async function openDesktop(): Promise<Page> {
  const creds = await api.get<{ desktop_url: string }>(`/computers/${id}/vnc-credentials`);
  const page = await newPage();
  await page.goto(creds.body.desktop_url);
  await waitState(page, 'connected');
  return page;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run \`apt-get install -y chromium\` (CI does, in .ci/run)`);
  profile = mkdtempSync(path.join(os.tmpdir(), 'hangar-chromium-'));
  browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
  api = await newTenant('desktop-browser');
  id = await api.runningComputer('desktop-browser');
});

afterAll(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (id) await api.del(`/computers/${id}`);
});

describe('the desktop in a browser', () => {
  it('desktop_url shows the desktop: the canvas has the screen\'s pixels, scaled to the window, and the token is gone from the address bar', async () => {
    const page = await openDesktop();
    expect(page.url()).not.toMatch(/auth=/);
    const size = await page.evaluate(`(() => {
      const c = document.querySelector('#screen canvas');
      const r = c.getBoundingClientRect();
      return { width: c.width, height: c.height, shownWidth: Math.round(r.width), shownHeight: Math.round(r.height) };
    })()`);
    expect(size, JSON.stringify(size)).toEqual({ width: 1280, height: 720, shownWidth: VIEWPORT.width, shownHeight: VIEWPORT.height });
    // The canvas is the desktop, not a blank frame: it matches what the API sees at nearly every point.
    expect(await until('the canvas to show the desktop', async () => ((await agreement(page)) >= 0.9 ? true : null))).toBe(true);
    await page.close();
  });

  it('a click and typing through the page reach the desktop; the API sees the result', async () => {
    const first = (await api.post<{ window: { id: string; x: number; y: number; width: number; height: number } }>(desk('launch'), { app: 'terminal', wait_for_window: true })).body.window;
    const second = (await api.post<{ window: { id: string } }>(desk('launch'), { app: 'terminal', wait_for_window: true })).body.window;
    await until('the second terminal to have focus', async () => ((await api.get<{ windows: Array<{ id: string; focused: boolean }> }>(desk('windows'))).body.windows.find((w) => w.focused)?.id === second.id ? true : null));
    const page = await openDesktop();
    // Click into the first terminal through the page (page pixels are desktop pixels times the scale).
    const cx = (first.x + first.width / 2) * SCALE;
    const cy = (first.y + first.height / 2) * SCALE;
    await page.mouse.click(cx, cy);
    await until('the clicked terminal to have focus', async () => ((await api.get<{ windows: Array<{ id: string; focused: boolean }> }>(desk('windows'))).body.windows.find((w) => w.focused)?.id === first.id ? true : null));
    const before = await apiScreenshot();
    await page.keyboard.type('echo typed-in-the-browser-$((20+22)) > /tmp/from-browser.txt');
    await page.keyboard.press('Enter');
    const written = await until('the file typed in the browser', async () => (await api.exec(id, 'cat /tmp/from-browser.txt 2>/dev/null')).body.output);
    expect(written).toBe('typed-in-the-browser-42\n');
    // An API screenshot shows the typing, inside the terminal's area.
    const after = await apiScreenshot();
    let changed = 0;
    for (let y = first.y; y < first.y + first.height; y += 2) for (let x = first.x; x < first.x + first.width; x += 2) if (pixel(before, x, y).some((v, c) => v !== pixel(after, x, y)[c])) changed++;
    expect(changed).toBeGreaterThan(50);
    // And the page shows the same screen as the API does.
    expect(await until('the page to catch up', async () => ((await agreement(page)) >= 0.9 ? true : null))).toBe(true);
    await page.close();
  });

  it('the page reconnects by itself after its connection drops, and input works again', async () => {
    const page = await openDesktop();
    dropAgentSockets();
    await pageWait(page, "document.documentElement.dataset.state !== 'connected'", 30_000);
    await waitState(page, 'connected');
    expect(await state(page)).toBe('connected');
    await api.post(desk('launch'), { app: 'terminal', wait_for_window: true });
    await page.keyboard.type('echo after-the-drop > /tmp/after-drop.txt');
    await page.keyboard.press('Enter');
    expect(await until('typing after the reconnect', async () => (await api.exec(id, 'cat /tmp/after-drop.txt 2>/dev/null')).body.output)).toBe('after-the-drop\n');
    await page.close();
  });

  it('the clipboard crosses both ways', async () => {
    const page = await openDesktop();
    // Desktop to page: what a program in the computer copies shows up in the page's clipboard panel.
    await api.exec(id, "printf 'copied in the computer ✓' | DISPLAY=:0 xclip -selection clipboard");
    await pageWait(page, "document.getElementById('clipboard').value === 'copied in the computer ✓'", 30_000);
    // Page to desktop: text given to the page becomes the desktop's clipboard.
    await page.evaluate("window.hangarDesktop.sendClipboard('pasted from the browser ✓')");
    const got = await until('the desktop clipboard', async () => {
      const r = await api.exec(id, 'DISPLAY=:0 timeout 5 xclip -o -selection clipboard 2>/dev/null');
      return r.body.output === 'pasted from the browser ✓' ? r.body.output : null;
    });
    expect(got).toBe('pasted from the browser ✓');
    await page.close();
  });

  it('embed gives a URL another site can frame; the framed page shows the desktop', async () => {
    const embed = await api.get<{ url: string; iframe: string; expires_at: number }>(`/computers/${id}/embed`);
    expect(embed.status).toBe(200);
    expect(embed.body.iframe).toContain(embed.body.url.replace(/&/g, '&amp;'));
    const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><body style="margin:0">${embed.body.iframe}</body>`));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const page = await newPage();
      await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      const frame = await until('the iframe', async () => page.frames().find((f) => f.url().includes('/desktop/index.html')) ?? null);
      await waitState(frame, 'connected').catch(async (e) => {
        throw new Error(`${e}: state ${await state(frame)}: ${await frame.textContent('#status')}`);
      });
      expect(await until('the framed canvas to show the desktop', async () => ((await agreement(frame)) >= 0.9 ? true : null))).toBe(true);
      await page.close();
    } finally {
      server.close();
    }
  });

  it('a page opened with a bad or expired link says so instead of showing a desktop', async () => {
    const creds = await api.get<{ desktop_url: string }>(`/computers/${id}/vnc-credentials`);
    const page = await newPage();
    await page.goto(creds.body.desktop_url.replace(/#auth=.*/, '#auth=not-a-token'));
    await waitState(page, 'expired');
    expect(await page.textContent('#status')).toMatch(/expired|not valid/);
    await page.close();
  });
});
