/**
 * Desktops through the whole API: screenshot latency at 1280x720 (beside exec
 * of `true`, the API's own round trip into the computer, and the daemon's
 * capture+encode inside the computer), click latency and click → changed
 * pixels as a VNC viewer sees them, typing speed into a terminal, time from
 * credentials to the first frame of the desktop in Chromium, and, for both
 * start policies (DESKTOP_START=boot|first-use), create → running, create →
 * first screenshot and the memory of an idle computer. It starts its own
 * stacks (wrangler dev, a fleet host, a host agent) and removes them after.
 *
 *   node bench/desktop.ts        (as root: computers are sandboxes)
 *   env BENCH_SHOTS=100 BENCH_CLICKS=40 BENCH_CHARS=2000 BENCH_FRAMES=5 BENCH_VERBOSE=1
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { SandboxDriver } from '../host-agent/drivers/sandbox.ts';
import { freePort, registerHost, seedTenant, startAgent, startWorker, type AgentHandle, type WorkerHandle } from '../scripts/local-stack.ts';
import { useSharedTemplates } from '../test/shared-template.ts';
import { RfbClient } from '../test/e2e/rfb-client.ts';
import { BenchApi } from './api.ts';

const SHOTS = Number(process.env.BENCH_SHOTS ?? 100);
const CLICKS = Number(process.env.BENCH_CLICKS ?? 40);
const CHARS = Number(process.env.BENCH_CHARS ?? 2000);
const FRAMES = Number(process.env.BENCH_FRAMES ?? 5);
const SETTLE_MS = 20_000;
const log = process.env.BENCH_VERBOSE === '1' ? (s: string) => void process.stderr.write(s) : undefined;
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const f = (n: number) => n.toFixed(1).padStart(8);
const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;

class Api extends BenchApi {
  /** GET screenshot; the PNG's size. */
  async screenshot(id: string): Promise<number> {
    const r = await this.raw('GET', `/computers/${id}/desktop/screenshot`);
    const bytes = await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`screenshot: ${r.status} ${new TextDecoder().decode(bytes)}`);
    return bytes.byteLength;
  }

  /** Creates a computer; ms until GET says running, and until the first screenshot answers 200. */
  async create(name: string): Promise<{ id: string; running: number; screenshot: number }> {
    const t0 = performance.now();
    const { id, ms: running } = await this.createRunning(name);
    for (;;) {
      const r = await this.raw('GET', `/computers/${id}/desktop/screenshot`);
      await r.arrayBuffer();
      if (r.status === 200) break;
      if (r.status !== 503) throw new Error(`screenshot: ${r.status}`);
    }
    return { id, running, screenshot: performance.now() - t0 };
  }
}

interface Stack {
  worker: WorkerHandle;
  agent: AgentHandle;
  api: Api;
  driver: SandboxDriver;
  stop(): Promise<void>;
}

async function startStack(policy: 'boot' | 'first-use'): Promise<Stack> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-desktop-'));
  const dataDir = path.join(stateDir, 'data');
  const worker = await startWorker({ stateDir, port: await freePort(), vars: { DESKTOP_START: policy }, log });
  const host = await registerHost(worker.origin, worker.secrets.OPERATOR_TOKEN, { name: 'bench-host', region: 'local' });
  useSharedTemplates(dataDir);
  const agent = await startAgent({ origin: worker.origin, hostKey: host.host_key, dataDir, log });
  const tenant = await seedTenant(worker.origin, worker.secrets.OPERATOR_TOKEN, { name: 'bench', rate_limit_per_minute: 1_000_000 });
  const driver = new SandboxDriver({ dataDir });
  return {
    worker,
    agent,
    api: new Api(worker.apiUrl, tenant.api_key),
    driver,
    async stop() {
      await agent.stop();
      for (const id of await driver.list().catch(() => [])) await driver.destroy(id).catch(() => undefined);
      await driver.close();
      await worker.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** Latencies of `n` successful runs of `op`; a failure (a 502 while wrangler dev reloads the Worker after a file changed) is counted and retried. */
let failures = 0;
async function timed(n: number, op: () => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  while (times.length < n) {
    const t0 = performance.now();
    try {
      await op();
      times.push(performance.now() - t0);
    } catch (err) {
      if (++failures > 20) throw err;
      console.error(`  failed (retrying): ${(err as Error).message.slice(0, 200)}`);
      await sleep(1000);
    }
  }
  return times;
}

/** Screenshots through the API beside exec `true` and the daemon's own capture+encode in the computer. */
async function screenshots(api: Api, id: string): Promise<void> {
  await timed(10, () => api.screenshot(id));
  await timed(10, () => api.exec(id, 'true'));
  const png = await api.screenshot(id);
  const shots = await timed(SHOTS, () => api.screenshot(id));
  const execs = await timed(SHOTS, () => api.exec(id, 'true'));
  // Inside: the daemon's screenshot on its own socket, timed by a client in the computer.
  const inside = await api.exec(id, `python3 - <<'EOF'
import json, socket, struct, time
P = struct.Struct(">II")
def rx(s, n):
    b = b""
    while len(b) < n:
        b += s.recv(n - len(b))
    return b
s = socket.create_connection(("127.0.0.1", 5990))
h, p = P.unpack(rx(s, 8)); rx(s, h + p)
ts = []
for i in range(${SHOTS}):
    raw = json.dumps({"t": "req", "id": i, "op": "screenshot", "args": {}}).encode()
    t0 = time.monotonic(); s.sendall(P.pack(len(raw), 0) + raw)
    h, p = P.unpack(rx(s, 8)); rx(s, h + p); ts.append((time.monotonic() - t0) * 1000)
ts.sort(); print(ts[len(ts) // 2], ts[min(len(ts) - 1, len(ts) * 99 // 100)])
EOF`);
  const [inP50, inP99] = inside.trim().split(' ').map(Number);
  console.log(`\nscreenshot 1280x720 (${SHOTS} each, one at a time; PNG ${(png / 1024).toFixed(0)} KiB)        p50 ms   p99 ms`);
  console.log(`GET …/desktop/screenshot (API)                            ${f(pct(shots, 50))} ${f(pct(shots, 99))}`);
  console.log(`POST …/exec true (API round trip into the computer)       ${f(pct(execs, 50))} ${f(pct(execs, 99))}`);
  console.log(`daemon screenshot inside the computer (capture + PNG)     ${f(inP50)} ${f(inP99)}`);
  console.log(`=> screenshot p50 is ${(pct(shots, 50) / pct(execs, 50)).toFixed(2)}x exec true; goal <= 100 ms p50`);
}

/** Click latency (the API answers once the X server has the input), and click -> changed pixels as a VNC viewer sees them. */
async function clicks(api: Api, id: string): Promise<void> {
  const creds = await api.ok<{ ws_url: string }>('GET', `/computers/${id}/vnc-credentials`);
  const u = new URL(creds.ws_url);
  const host = u.host;
  u.hostname = '127.0.0.1';
  const vnc = await RfbClient.overWebSocket(u.toString(), { host });
  await vnc.handshake();
  // A spot of bare desktop: a right click there opens the desktop menu, Escape closes it.
  const at = { x: 1000, y: 500 };
  const region = { x: at.x - 10, y: at.y - 10, w: 120, h: 120 };
  const api1 = await timed(CLICKS, () => api.ok('POST', `/computers/${id}/desktop/click`, { x: 300, y: 600, button: 'left' }));
  const pixels: number[] = [];
  for (let i = 0; i < CLICKS; i++) {
    vnc.requestUpdate(region.x, region.y, region.w, region.h, false);
    await vnc.nextUpdate();
    vnc.requestUpdate(region.x, region.y, region.w, region.h, true);
    const t0 = performance.now();
    await api.ok('POST', `/computers/${id}/desktop/click`, { ...at, button: 'right' });
    await vnc.nextUpdate(10_000);
    pixels.push(performance.now() - t0);
    await api.ok('POST', `/computers/${id}/desktop/key`, { key: 'Escape' });
    await sleep(150);
  }
  vnc.close();
  console.log(`\nclick (${CLICKS} each)                                               p50 ms   p99 ms`);
  console.log(`POST …/desktop/click (answers when the input is delivered)  ${f(pct(api1, 50))} ${f(pct(api1, 99))}`);
  console.log(`right click -> desktop menu's pixels at a VNC viewer       ${f(pct(pixels, 50))} ${f(pct(pixels, 99))}`);
  console.log(`=> goal: click <= 30 ms p50`);
}

/** Characters per second into a terminal, counted when the program reading them has them. */
async function typing(api: Api, id: string): Promise<void> {
  await api.ok('POST', `/computers/${id}/desktop/launch`, { app: 'terminal', wait_for_window: true });
  await sleep(500);
  await api.ok('POST', `/computers/${id}/desktop/type`, { text: 'cat > /tmp/bench-typed\n' });
  await sleep(500);
  const line = 'the quick brown fox jumps over the lazy dog 0123456789 '.repeat(2).slice(0, 99) + '\n';
  const text = line.repeat(Math.ceil(CHARS / line.length)).slice(0, CHARS - 1) + '\n';
  const t0 = performance.now();
  const r = await api.ok<{ duration_ms: number }>('POST', `/computers/${id}/desktop/type`, { text });
  const delivered = performance.now() - t0;
  for (;;) {
    const n = Number((await api.exec(id, 'wc -c < /tmp/bench-typed')).trim());
    if (n >= text.length) break;
    if (performance.now() - t0 > 120_000) throw new Error(`only ${n} of ${text.length} characters arrived`);
    await sleep(20);
  }
  const arrived = performance.now() - t0;
  await api.ok('POST', `/computers/${id}/desktop/key`, { key: 'ctrl+d' });
  console.log(`\ntyping ${text.length} characters into a terminal (cat > file)`);
  console.log(`daemon sent them in ${r.duration_ms.toFixed(0)} ms; the API answered in ${delivered.toFixed(0)} ms; cat had all of them after ${arrived.toFixed(0)} ms`);
  console.log(`=> ${(text.length / (arrived / 1000)).toFixed(0)} chars/s end to end (goal >= 200)`);
}

/** From asking for credentials to the desktop's first frame on the noVNC canvas in Chromium. */
async function firstFrame(api: Api, id: string): Promise<void> {
  if (!existsSync(CHROMIUM)) {
    console.log(`\nfirst frame: skipped (${CHROMIUM} is missing)`);
    return;
  }
  const profile = mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
  try {
    const frames: number[] = [];
    const loads: number[] = [];
    for (let i = 0; i < FRAMES + 1; i++) {
      const page = await browser.newPage();
      const t0 = performance.now();
      const creds = await api.ok<{ desktop_url: string }>('GET', `/computers/${id}/vnc-credentials`);
      await page.goto(creds.desktop_url, { waitUntil: 'domcontentloaded' });
      const loaded = performance.now() - t0;
      // Drawn: connected, and the canvas holds more than the background (the panel along the top).
      // Polled with evaluate, not waitForFunction: the page's CSP allows no eval.
      const drawn = `(() => {
        const c = document.querySelector('#screen canvas');
        if (!c || document.documentElement.dataset.state !== 'connected') return false;
        const d = c.getContext('2d').getImageData(0, 0, 400, 24).data;
        const seen = new Set();
        for (let i = 0; i < d.length; i += 4 * 7) seen.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]);
        return seen.size > 3;
      })()`;
      while (!(await page.evaluate(drawn))) {
        if (performance.now() - t0 > 60_000) throw new Error('no desktop frame within 60 s');
        await sleep(5);
      }
      if (i > 0) {
        frames.push(performance.now() - t0);
        loads.push(loaded);
      }
      await page.close();
    }
    console.log(`\nfirst frame in Chromium (${FRAMES} runs after one warm-up)                 p50 ms   max ms`);
    console.log(`GET vnc-credentials -> page loaded (HTML + script)         ${f(pct(loads, 50))} ${f(Math.max(...loads))}`);
    console.log(`GET vnc-credentials -> first desktop frame on the canvas   ${f(pct(frames, 50))} ${f(Math.max(...frames))}`);
    console.log(`=> goal: first frame <= 1500 ms`);
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

const POLICY_RUNS = Number(process.env.BENCH_POLICY_RUNS ?? 3);

/** Create -> running, create -> first screenshot (medians of a few computers made one after another), idle memory: what the start policy changes. */
async function policy(name: 'boot' | 'first-use'): Promise<{ running: number; screenshot: number; idle: number; withDesktop: number }> {
  const stack = await startStack(name);
  try {
    const made = [];
    for (let i = 0; i < POLICY_RUNS; i++) made.push(await stack.api.create(`bench-${name}-${i}`));
    let idle = 0;
    if (name === 'first-use') {
      // The screenshots above started their desktops; a fresh computer shows the memory without one.
      const bare = await stack.api.createRunning('bench-bare');
      await sleep(SETTLE_MS);
      idle = (await stack.driver.metrics(bare.id))?.memory_bytes ?? 0;
    }
    await sleep(SETTLE_MS);
    const withDesktop = (await stack.driver.metrics(made[0].id))?.memory_bytes ?? 0;
    return { running: pct(made.map((m) => m.running), 50), screenshot: pct(made.map((m) => m.screenshot), 50), idle, withDesktop };
  } finally {
    await stack.stop();
  }
}

async function main(): Promise<void> {
  const boot = await startStack('boot');
  try {
    const { id } = await boot.api.create('bench');
    await screenshots(boot.api, id);
    await clicks(boot.api, id);
    await typing(boot.api, id);
    await firstFrame(boot.api, id);
  } finally {
    await boot.stop();
  }
  const b = await policy('boot');
  const u = await policy('first-use');
  console.log(`\nstart policy (DESKTOP_START), p50 of ${POLICY_RUNS}     create->running ms   create->first screenshot ms   idle computer memory`);
  console.log(`boot (default): desktop starts at once        ${f(b.running)}                    ${f(b.screenshot)}   ${mib(b.withDesktop)} with its desktop`);
  console.log(`first-use: on the first call or viewer        ${f(u.running)}                    ${f(u.screenshot)}   ${mib(u.idle)} without, ${mib(u.withDesktop)} once started`);
  console.log(`=> an idle desktop costs ${mib(u.withDesktop - u.idle)} of the computer's memory`);
  if (failures) console.log(`(${failures} failed requests were retried)`);
}

await main();
