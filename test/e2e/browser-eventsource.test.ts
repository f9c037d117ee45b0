/**
 * The spec's browser snippet (spec/04-exec-stream.txt) in a real browser:
 * headless Chromium opens a page of another origin whose EventSource reads a
 * command's stream from the real API, so CORS, the ticket in the URL and the
 * SSE framing are all checked as a browser applies them.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';
import { Streams } from './exec-streams.ts';

const CHROMIUM = '/usr/bin/chromium';
// No sandbox as root; no background traffic, which this machine's closed network refuses.
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// The spec's snippet as written, but for the absolute API base and what it records for the test.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>exec stream</title>
<script>
const q = new URLSearchParams(location.search);
const API = q.get('api');
const id = q.get('id');
const ticket = q.get('ticket');
window.seen = [];
window.exitCode = null;
window.failed = false;

const es = new EventSource(\`\${API}/api/v1/computers/\${id}/exec/stream/events?ticket=\${ticket}\`);

es.addEventListener('output', e => {
  const { line, stream } = JSON.parse(e.data);
  console.log(\`[\${stream}] \${line}\`);
  window.seen.push(\`[\${stream}] \${line}\`);
});

es.addEventListener('exit', e => {
  const { exit_code } = JSON.parse(e.data);
  console.log(\`Exited with code \${exit_code}\`);
  window.exitCode = exit_code;
  es.close();
});

es.addEventListener('error', () => {
  // Connection dropped or ticket expired
  window.failed = true;
  es.close();
});
</script>`;

describe('EventSource in a browser, end to end', () => {
  let api: Client;
  let s: Streams;
  let server: http.Server;
  let pageOrigin: string;
  let profile: string;
  let browser: BrowserContext;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run \`apt-get install -y chromium\` (CI does, in .ci/run)`);
    server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    profile = mkdtempSync(path.join(os.tmpdir(), 'hangar-chromium-'));
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
    api = await newTenant('browser');
    s = new Streams(api, await api.runningComputer('browser'));
  });

  afterAll(async () => {
    await browser?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    server?.close();
    if (s) await api.del(`/computers/${s.id}`);
  });

  it('the spec snippet receives every line of both streams and the exit code', async () => {
    const t = await s.start('for i in $(seq 1 200); do echo "line $i"; done; echo "to stderr" >&2; sleep 0.2; echo "héllo ✓"; exit 3');
    const page = await browser.newPage();
    const query = new URLSearchParams({ api: s.origin, id: s.id, ticket: t.ticket });
    await page.goto(`${pageOrigin}/?${query}`);
    await page.waitForFunction('window.exitCode !== null || window.failed', null, { timeout: 60_000 });
    expect(await page.evaluate('window.failed')).toBe(false);
    expect(await page.evaluate('window.exitCode')).toBe(3);
    const seen = (await page.evaluate('window.seen')) as string[];
    const stdout = [...Array.from({ length: 200 }, (_, i) => `[stdout] line ${i + 1}\n`), '[stdout] héllo ✓\n'];
    expect(seen.filter((l) => l.startsWith('[stdout]'))).toEqual(stdout);
    expect(seen.filter((l) => l.startsWith('[stderr]'))).toEqual(['[stderr] to stderr\n']);
    await page.close();
  });
});
