/**
 * An exposed port in a real browser: headless Chromium opens the port's
 * preview URL (`*.localhost` names go to loopback in Chromium), the app's page
 * opens a WebSocket back to its own host through the relay, and the page
 * shows the echo. A private port is opened the way a person would: through a
 * link the API mints, whose cookie then carries the page and its socket.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let api: Client;
let id: string;
let profile: string;
let browser: BrowserContext;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run \`apt-get install -y chromium\` (CI does, in .ci/run)`);
  api = await newTenant('browser-preview');
  id = await api.runningComputer('Browser Box');
  const apps = readFileSync(path.join(import.meta.dirname, 'apps', 'preview_apps.py'), 'utf8');
  const r = await api.exec(id, `cat > /tmp/apps.py <<'PYEOF'\n${apps}\nPYEOF\nnohup python3 /tmp/apps.py >/tmp/apps.log 2>&1 &\nfor i in $(seq 100); do test -e /tmp/apps.ready && exit 0; sleep 0.1; done; exit 1`, 60);
  expect(r.body.exit_code).toBe(0);
  profile = mkdtempSync(path.join(os.tmpdir(), 'hangar-chromium-'));
  browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  if (id) await api.del(`/computers/${id}`);
});

describe('an exposed port in a browser', () => {
  it("the app's page opens a WebSocket back through the relay and shows the echo", async () => {
    const port = await api.post<{ data: { url: string } }>(`/computers/${id}/ports`, { port: 8003, visibility: 'public' });
    expect(port.status).toBe(201);
    const page = await browser.newPage();
    const res = await page.goto(`${port.body.data.url}/`);
    expect(res?.status()).toBe(200);
    await page.waitForFunction("document.getElementById('out').textContent !== 'waiting'", null, { timeout: 60_000 });
    expect(await page.textContent('#out')).toBe('echo: ping from the page');
    await page.close();
  });

  it('a private port opens through a minted link, and its cookie carries the page and its WebSocket', async () => {
    expect((await api.patch(`/computers/${id}/ports/8003`, { visibility: 'private' })).status).toBe(200);
    const page = await browser.newPage();
    const refused = await page.goto(`${(await api.get<{ data: { url: string } }>(`/computers/${id}/ports/8003`)).body.data.url}/`);
    expect(refused?.status()).toBe(401);
    expect(await page.textContent('h1')).toContain('401');
    const link = (await api.post<{ data: { url: string } }>(`/computers/${id}/ports/8003/link`, { path: '/' })).body.data.url;
    const res = await page.goto(link);
    expect(res?.status()).toBe(200);
    await page.waitForFunction("document.getElementById('out').textContent !== 'waiting'", null, { timeout: 60_000 });
    expect(await page.textContent('#out')).toBe('echo: ping from the page');
    // The cookie is HttpOnly: the app's own scripts cannot read it.
    expect(await page.evaluate('document.cookie')).toBe('');
    await page.close();
  });
});
