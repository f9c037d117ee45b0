/**
 * The relay, measured on a stack of its own (wrangler dev, a real agent, a
 * real sandbox), each figure beside the same app answering straight on this
 * host's loopback in the same run: time to first byte, download and upload
 * rates, WebSocket echo round trips, 100 connections at once, an SSE event's
 * delay at a real browser, the relay's memory during a long transfer, and the
 * object's CPU per MiB — the measurement behind where HTTP is spoken.
 * Ends with the issue's goals, met or not.
 *
 *   npm run bench:relay            (as root: computers are sandboxes)
 *   env BENCH_RTT_MS=0 BENCH_ROUNDS=3 BENCH_TTFB=300 BENCH_MIB=256 BENCH_GIB=1 BENCH_ECHO=500 BENCH_CONC=100 BENCH_ONLY=ttfb,rate,echo,conc,sse,memory,hops,cpu
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { RssSampler, mib, ms, pct, printRss, row } from './streams/measure.ts';
import { STATE_ON, startStack, type Stack } from './streams/stack.ts';
import { startApps, type Apps } from './relay/apps.ts';
import { concurrent, direct, download, mibps, ttfb, upload, viaPreview, wsEcho, type Rate, type Target } from './relay/clients.ts';
import { chunkedDecodeMsPerMib, cpuByRole, cpuSeconds } from './relay/cpu.ts';

const TTFB_N = Number(process.env.BENCH_TTFB ?? 300);
const MIB = Number(process.env.BENCH_MIB ?? 256);
/** Uploads stay under the platform's request body limit (100 MiB; RELAY_MAX_BODY_BYTES). */
const UP_MIB = Math.min(MIB, Number(process.env.BENCH_UP_MIB ?? 96));
const GIB = Number(process.env.BENCH_GIB ?? 1);
const ECHO_N = Number(process.env.BENCH_ECHO ?? 500);
const CONC = Number(process.env.BENCH_CONC ?? 100);
/** Rounds of the TTFB and rate measurements: the machine is shared, so one figure is a sample, not a measurement. */
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
/** Round trip added between the agent and the dev server (0: loopback's), as between a host and the edge. */
const RTT_MS = Number(process.env.BENCH_RTT_MS ?? 0);
const ONLY = process.env.BENCH_ONLY?.split(',') ?? null;
const runs = (part: string) => ONLY === null || ONLY.includes(part);
const CHROMIUM = '/usr/bin/chromium';

const goals: string[] = [];
const goal = (met: boolean, text: string) => goals.push(`  [${met ? 'met' : 'NOT met'}] ${text}`);
const lat = (v: number[]) => `p50 ${ms(pct(v, 50))} p99 ${ms(pct(v, 99))}`;
const median = (v: number[]) => pct(v, 50);
const spread = (v: number[], f: (x: number) => string) => `range ${f(Math.min(...v))}–${f(Math.max(...v))}`;
const rate = (r: Rate) => `${mibps(r).toFixed(1)} MiB/s`;
const MiB = 1048576;

interface Targets {
  relay: (app: number) => Target;
  inner: ((app: number) => Target) | null;
  local: (app: number) => Target;
}

async function timeToFirstByte(t: Targets): Promise<void> {
  console.log(`\nTime to first byte of a small GET (${TTFB_N} one after another, ${ROUNDS} rounds)`);
  await ttfb(t.relay(1), 20);
  const added: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const relay = await ttfb(t.relay(1), TTFB_N);
    const inner = t.inner ? await ttfb(t.inner(1), TTFB_N) : null;
    const local = await ttfb(t.local(1), TTFB_N);
    row(`round ${round}: through the relay`, lat(relay), `straight to the app ${lat(local)}`);
    if (inner) row(`round ${round}: wrangler's entry proxy skipped`, lat(inner), `straight to the app ${lat(local)}`);
    added.push((inner ? pct(inner, 50) : pct(relay, 50)) - pct(local, 50));
  }
  const m = median(added);
  console.log(`  added by the relay (p50): ${ms(m)} median, ${spread(added, ms)}${t.inner ? " (without the dev server's entry proxy, which production does not have)" : ''}`);
  goal(m <= 5, `added TTFB p50 ≤ 5 ms: ${ms(m)} (median of ${ROUNDS} rounds, ${spread(added, ms)})`);
}

async function rates(t: Targets): Promise<void> {
  console.log(`\nThroughput: ${MIB} MiB down, ${UP_MIB} MiB up, ${ROUNDS} rounds, relay and direct alternating (sha256 checked by the receiving end)`);
  const bytes = MIB * MiB;
  const upBytes = UP_MIB * MiB;
  const down: number[] = [];
  const up: number[] = [];
  const downLocal: number[] = [];
  const upLocal: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    down.push(mibps(await download(t.relay(1), bytes)));
    downLocal.push(mibps(await download(t.local(1), bytes)));
    up.push(mibps(await upload(t.relay(1), upBytes)));
    upLocal.push(mibps(await upload(t.local(1), upBytes)));
  }
  const r = (v: number) => `${v.toFixed(1)} MiB/s`;
  row('download through the relay', `${r(median(down))} (${spread(down, r)})`, `straight to the app ${r(median(downLocal))} (${spread(downLocal, r)})`);
  row('upload through the relay', `${r(median(up))} (${spread(up, r)})`, `straight to the app ${r(median(upLocal))} (${spread(upLocal, r)})`);
  if (t.inner) {
    row("download, wrangler's entry proxy skipped", rate(await download(t.inner(1), bytes)), '-');
    row("upload, wrangler's entry proxy skipped", rate(await upload(t.inner(1), upBytes)), '-');
  }
  goal(median(down) >= 50 && median(up) >= 50, `≥ 50 MiB/s each way (medians of ${ROUNDS} rounds): download ${r(median(down))}, upload ${r(median(up))}`);
}

async function echo(t: Targets): Promise<void> {
  console.log(`\nWebSocket echo round trip (${ECHO_N} small messages, one at a time)`);
  const relay = await wsEcho(t.relay(3), ECHO_N);
  const local = await wsEcho(t.local(3), ECHO_N);
  row('through the relay', lat(relay), `straight to the app ${lat(local)}`);
  if (t.inner) row("through the relay, wrangler's entry proxy skipped", lat(await wsEcho(t.inner(3), ECHO_N)), '-');
}

async function connections(t: Targets): Promise<void> {
  console.log(`\n${CONC} connections at once (each downloads 1 MiB)`);
  const relay = await concurrent(t.relay(1), CONC, MiB);
  const local = await concurrent(t.local(1), CONC, MiB);
  row('through the relay', `${relay.seconds.toFixed(2)} s, ${relay.failed} failed`, `straight to the app ${local.seconds.toFixed(2)} s, ${local.failed} failed`);
  for (const [reason, count] of Object.entries(relay.why)) console.log(`    relay failure x${count}: ${reason}`);
  for (const [reason, count] of Object.entries(local.why)) console.log(`    direct failure x${count}: ${reason}`);
  goal(relay.failed === 0, `${CONC} concurrent connections all answered: ${CONC - relay.failed}/${CONC}`);
}

async function sseAtBrowser(apps: Apps, t: Targets): Promise<void> {
  console.log('\nServer-sent event delay at a browser (app writes its clock, the page reads its own; 200 events 20 ms apart)');
  if (!existsSync(CHROMIUM)) return console.log(`  skipped: ${CHROMIUM} is missing`);
  const profile = mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const delays = async (origin: string) => {
    const page = await browser.newPage();
    await page.goto(`${origin}/page?n=200&ms=20`);
    await page.waitForFunction('window.done', null, { timeout: 120_000 });
    const v = (await page.evaluate('window.lat')) as number[];
    await page.close();
    return v.slice(5);
  };
  try {
    const relay = await delays(apps.preview[2]);
    const local = await delays(`http://127.0.0.1:${apps.local[2]}`);
    row('through the relay', lat(relay), `straight to the app ${lat(local)}`);
    goal(pct(relay, 50) <= 10, `SSE event at the browser within 10 ms of the app writing it (p50): ${ms(pct(relay, 50))}, p99 ${ms(pct(relay, 99))}`);
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
  void t;
}

async function memory(stack: Stack, t: Targets): Promise<void> {
  const bytes = GIB * 1024 * MiB;
  console.log(`\nRelay memory during a ${mib(bytes)} download through the relay`);
  const sampler = new RssSampler({ ...stack.workerd, 'host agent': stack.agentPid });
  const r = await download(t.relay(1), bytes);
  printRss(sampler.stop());
  console.log(`    (${rate(r)})`);
}

/**
 * CPU per MiB of each hop, which contention on a shared machine disturbs far
 * less than a rate does: on a machine with `n` free cores a transfer cannot
 * beat n × 1000 / (the sum) MiB/s, and the hop that spends most is the one
 * to work on.
 */
async function hops(stack: Stack, t: Targets): Promise<void> {
  console.log(`\nWhere the CPU goes, by process: per MiB of ${MIB} MiB down and ${UP_MIB} MiB up, and per small GET, through the relay`);
  const roles = new Map(Object.entries(stack.workerd).map(([name, pid]) => [pid, name]));
  const label = (pid: number, cmd: string) =>
    roles.get(pid) ?? (/hangar[-_]guest|\/guest --listen/.test(cmd) ? 'guest agent (in the computer)' : /\/launcher\b/.test(cmd) ? 'the computer (launcher)' : cmd.includes('apps.py') ? 'the app (in the computer)' : cmd.includes('workerd') ? 'workerd (other)' : null);
  const roots = { 'dev server (wrangler)': stack.workerPid, 'host agent (+ sandbox plumbing)': stack.agentPid };
  const groups = { 'the computer (other)': `/hangar/${stack.computerId}` };
  /** CPU by role while `what` runs, each divided by `per`. */
  const measure = async (what: () => Promise<unknown>, per: number) => {
    const before = cpuByRole(roots, groups, label);
    const me = process.cpuUsage();
    await what();
    const after = cpuByRole(roots, groups, label);
    const mine = process.cpuUsage(me);
    const out = new Map<string, number>();
    for (const [role, s] of after) out.set(role, ((s - (before.get(role) ?? 0)) * 1000) / per);
    out.set('the client (this bench)', (mine.user + mine.system) / 1000 / per);
    return out;
  };
  let downRate = 0;
  let upRate = 0;
  const down = await measure(async () => (downRate = mibps(await download(t.relay(1), MIB * MiB))), MIB);
  const up = await measure(async () => (upRate = mibps(await upload(t.relay(1), UP_MIB * MiB))), UP_MIB);
  const small = await measure(() => ttfb(t.relay(1), TTFB_N), TTFB_N);
  const names = [...new Set([...down.keys(), ...up.keys(), ...small.keys()])].sort();
  const f = (v: number | undefined) => `${(v ?? 0).toFixed(2)} ms/MiB`;
  const g = (v: number | undefined) => `${(v ?? 0).toFixed(2)} ms/request`;
  const line = (a: string, b: string, c: string, d: string) => console.log(`  ${a.padEnd(36)} ${b.padEnd(28)} ${c.padEnd(28)} ${d}`);
  line('', 'download', 'upload', `small GET (${TTFB_N})`);
  for (const n of names) line(n, f(down.get(n)), f(up.get(n)), g(small.get(n)));
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  line('all of them', `${f(sum(down))} (${downRate.toFixed(1)} MiB/s)`, `${f(sum(up))} (${upRate.toFixed(1)} MiB/s)`, g(sum(small)));
}

async function cpu(stack: Stack, t: Targets): Promise<void> {
  const pid = stack.workerd['workerd (Worker + DOs)'];
  if (!pid) return console.log('\nCPU: the Worker\'s workerd was not found; skipped');
  console.log(`\nWhere HTTP is spoken: CPU of the Worker + objects process per MiB downloaded (${MIB} MiB)`);
  const per = async (what: () => Promise<Rate>) => {
    const c0 = cpuSeconds(pid);
    const r = await what();
    return ((cpuSeconds(pid) - c0) * 1000) / (r.bytes / MiB);
  };
  const http = await per(() => download(t.relay(1), MIB * MiB));
  const raw = await per(() => rawTcpDownload(stack, MIB * MiB));
  const parse = chunkedDecodeMsPerMib(MIB);
  row('HTTP stream (the agent speaks HTTP)', `${http.toFixed(2)} ms CPU/MiB`, '-');
  row('raw TCP stream (the client speaks HTTP)', `${raw.toFixed(2)} ms CPU/MiB`, '-');
  row('+ decoding chunked HTTP in JavaScript', `${parse.toFixed(2)} ms CPU/MiB`, '(what the object would add)');
}

/** GET /blob over the raw TCP route: the client speaks HTTP/1.1 itself over the WebSocket. */
async function rawTcpDownload(stack: Stack, bytes: number): Promise<Rate> {
  const { default: WebSocket } = await import('ws');
  const ws = new WebSocket(`${stack.origin.replace('http', 'ws')}/api/v1/computers/${stack.computerId}/tcp/8001`, { headers: { authorization: `Bearer ${stack.key}` }, perMessageDeflate: false });
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  const t0 = performance.now();
  let got = 0;
  await new Promise<void>((resolve) => {
    ws.on('message', (d: Buffer) => {
      got += d.length;
    });
    ws.once('close', () => resolve());
    ws.send(Buffer.from(`GET /blob?bytes=${bytes} HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n\r\n`));
  });
  if (got < bytes) throw new Error(`raw TCP download: ${got} of ${bytes} bytes`);
  return { bytes, seconds: (performance.now() - t0) / 1000 };
}

async function main(): Promise<void> {
  console.log(`bench:relay — ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; dev server state on ${STATE_ON}${RTT_MS ? `; ${RTT_MS} ms of round trip between the agent and the dev server` : ''}`);
  process.stderr.write('  … starting a stack (wrangler dev, agent, computer) and the apps\n');
  const stack = await startStack({ agentRttMs: RTT_MS });
  let apps: Apps | null = null;
  try {
    apps = await startApps(stack);
    const a = apps;
    const t: Targets = {
      relay: (i) => viaPreview(stack.origin, a.preview[i]),
      inner: stack.inner ? (i) => viaPreview(stack.inner!, a.preview[i]) : null,
      local: (i) => direct(a.local[i]),
    };
    if (runs('ttfb')) await timeToFirstByte(t);
    if (runs('rate')) await rates(t);
    if (runs('echo')) await echo(t);
    if (runs('conc')) await connections(t);
    if (runs('sse')) await sseAtBrowser(a, t);
    if (runs('memory')) await memory(stack, t);
    if (runs('hops')) await hops(stack, t);
    if (runs('cpu')) await cpu(stack, t);
    console.log('\nGoals');
    for (const g of goals) console.log(g);
  } finally {
    apps?.stop();
    await stack.stop();
  }
}

await main();
