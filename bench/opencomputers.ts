/**
 * OpenComputers through the whole API, with baselines measured in the same
 * run: a job of `true` on a tenant host (HTTP -> Worker -> HostObject -> host
 * socket -> host-mode agent -> process on the machine -> back) beside a plain
 * Node spawn of /bin/true and beside a sync exec of `true` on a computer;
 * how soon a job's output reaches an SSE viewer after it was written; how
 * long an agent takes from its start to its host being online. The agent is
 * installed with install.sh and run by the system's Node as an unprivileged
 * user, as a customer's would be. It starts its own stack and removes it.
 *
 *   npm run bench:opencomputers        (as root: the computer is a sandbox, the agent's user is made once)
 *   env BENCH_N=300 BENCH_ONLINE_RUNS=5 BENCH_MIB=64 BENCH_VERBOSE=1
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { freshHome, installAgent, runHostModeAgent, type HostModeAgent } from '../scripts/host-mode-agent.ts';
import { parseSse } from '../test/e2e/sse.ts';
import { startStack, type Stack } from './streams/stack.ts';

const N = Number(process.env.BENCH_N ?? 300);
/** Size of the file moved up and down (MiB; the upload limit is 100 MiB). */
const FILE_MIB = Number(process.env.BENCH_MIB ?? 64);
const ONLINE_RUNS = Number(process.env.BENCH_ONLINE_RUNS ?? 5);
const WARMUP = 30;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Wall-clock now in ms with a fraction (the agent's `date +%s%N` is on the same clock). */
const nowMs = () => performance.timeOrigin + performance.now();

interface Stats {
  p50: number;
  p99: number;
  mean: number;
  n: number;
}

function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const pct = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
  return { p50: pct(50), p99: pct(99), mean: s.reduce((a, b) => a + b, 0) / s.length, n: s.length };
}

async function timed(n: number, op: () => Promise<void>): Promise<Stats> {
  for (let i = 0; i < WARMUP; i++) await op();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op();
    times.push(performance.now() - t0);
  }
  return stats(times);
}

function spawnTrue(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/true', [], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`/bin/true exited ${code}`))));
  });
}

const f = (n: number) => n.toFixed(2).padStart(8);

async function waitStatus(stack: Stack, hostId: string, status: string, pollMs: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await stack.call<{ status: string }>('GET', `/opencomputers/hosts/${hostId}`)).body.status !== status) {
    if (Date.now() > deadline) throw new Error(`host not ${status} within 60 s`);
    await sleep(pollMs);
  }
}

/** Agent start (process spawned, bundle already installed) -> GET host says online. */
async function agentToOnline(stack: Stack, hostId: string, hostKey: string, agentFile: string, home: string): Promise<{ times: number[]; agent: HostModeAgent }> {
  const times: number[] = [];
  let agent: HostModeAgent | null = null;
  for (let i = 0; i < ONLINE_RUNS; i++) {
    if (agent) {
      await agent.stop();
      await waitStatus(stack, hostId, 'offline', 20);
    }
    const t0 = performance.now();
    agent = await runHostModeAgent({ origin: stack.origin, hostKey, agentFile, home, wait: false });
    await waitStatus(stack, hostId, 'online', 5);
    times.push(performance.now() - t0);
  }
  await sleep(200);
  return { times, agent: agent! };
}

/**
 * Uploads a file (raw body), downloads it, and copies it locally through Node
 * streams; MiB/s of each, best of three. `origin` is the API's (wrangler dev's
 * entry proxy) or the Worker's own listener behind it, one hop shorter, as
 * production has no such proxy.
 */
async function fileThroughput(stack: Stack, origin: string, base: string): Promise<{ up: number; down: number; local: number; exact: boolean }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-file-'));
  try {
    const data = randomBytes(FILE_MIB * 1024 * 1024);
    const src = path.join(dir, 'src.bin');
    writeFileSync(src, data);
    const mibs = (ms: number) => FILE_MIB / (ms / 1000);
    const best = async (op: () => Promise<void>) => {
      let fastest = Infinity;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        await op();
        fastest = Math.min(fastest, performance.now() - t0);
      }
      return mibs(fastest);
    };
    const auth = { authorization: `Bearer ${stack.key}` };
    const up = await best(async () => {
      const r = await fetch(`${origin}/api/v1${base}/fs/upload?path=bench.bin`, { method: 'POST', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: data });
      if (r.status !== 201) throw new Error(`upload: ${r.status} ${await r.text()}`);
    });
    let got = new Uint8Array(0);
    const down = await best(async () => {
      const r = await fetch(`${origin}/api/v1${base}/fs/download?path=bench.bin`, { headers: auth });
      got = new Uint8Array(await r.arrayBuffer());
    });
    const local = await best(() => pipeline(createReadStream(src), createWriteStream(path.join(dir, 'copy.bin'))));
    const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
    return { up, down, local, exact: sha(got) === sha(data) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A job writes the wall clock every 50 ms; each line's arrival at a viewer (connected first) minus when it was written. */
async function firstByteLatency(stack: Stack, base: string): Promise<{ written: Stats; started: number; firstOutput: number }> {
  const lines = 60;
  const t0 = performance.now();
  const job = await stack.call<{ id: string }>('POST', `${base}/exec`, { command: `for i in $(seq ${lines}); do date +%s%N; sleep 0.05; done`, wait: false });
  const res = await fetch(`${stack.apiUrl}${base}/exec/${job.body.id}/stream`, { headers: { authorization: `Bearer ${stack.key}` } });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const latencies: number[] = [];
  let buf = '';
  let started = 0;
  let firstOutput = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const at = nowMs();
    const atPerf = performance.now();
    const parsed = parseSse(buf + decoder.decode(value, { stream: true }));
    buf = parsed.rest;
    for (const m of parsed.messages) {
      if (m.event === 'started' && !started) started = atPerf - t0;
      if (m.event !== 'stdout') continue;
      if (!firstOutput) firstOutput = atPerf - t0;
      for (const line of (JSON.parse(m.data) as { data: string }).data.split('\n').filter(Boolean)) latencies.push(at - Number(line) / 1e6);
    }
  }
  // The first lines were written before this viewer connected: they measure its catching up, not live delivery.
  return { written: stats(latencies.slice(5)), started, firstOutput };
}

async function main(): Promise<void> {
  const stack = await startStack();
  let agent: HostModeAgent | null = null;
  let home = '';
  try {
    const host = await stack.call<{ id: string; host_key: string }>('POST', '/opencomputers/hosts', { name: 'bench-box' });
    if (host.status !== 201) throw new Error(`register: ${host.status} ${JSON.stringify(host.body)}`);
    const base = `/opencomputers/hosts/${host.body.id}`;
    home = freshHome();
    const installT0 = performance.now();
    const agentFile = installAgent(stack.origin, home, host.body.host_key);
    const installMs = performance.now() - installT0;

    const online = await agentToOnline(stack, host.body.id, host.body.host_key, agentFile, home);
    agent = online.agent;

    const job = async (body: Record<string, unknown>) => {
      const r = await stack.call<{ status: string }>('POST', `${base}/exec`, body);
      if (r.status !== 200 || r.body.status !== 'completed') throw new Error(`job: ${r.status} ${JSON.stringify(r.body)}`);
    };
    const exec = async () => {
      const r = await stack.call<{ exit_code: number }>('POST', `/computers/${stack.computerId}/exec`, { command: 'true' });
      if (r.status !== 200 || r.body.exit_code !== 0) throw new Error(`exec: ${r.status}`);
    };
    const rows: [string, Stats][] = [
      ['spawn /bin/true (Node, this machine)', await timed(N, spawnTrue)],
      ['computer sync exec `true`', await timed(N, exec)],
      ['job `true` (args: no shell)', await timed(N, () => job({ command: 'true', args: [] }))],
      ['job `true` (command line: sh -c)', await timed(N, () => job({ command: 'true' }))],
    ];
    const execRow = rows[1][1];
    console.log(`\njob round trip through the API (c=1, n=${N}), beside a local spawn and a computer's sync exec`);
    console.log('what                                      p50 ms   p99 ms  mean ms | p50 vs exec  vs spawn');
    for (const [label, s] of rows) {
      console.log(`${label.padEnd(40)} ${f(s.p50)} ${f(s.p99)} ${f(s.mean)} | ${(s.p50 / execRow.p50).toFixed(2).padStart(10)}x ${(s.p50 / rows[0][1].p50).toFixed(1).padStart(8)}x`);
    }

    const fb = await firstByteLatency(stack, base);
    console.log('\njob output to an SSE viewer (a job writing the clock every 50 ms; the viewer connected first)');
    console.log(`written -> received: p50 ${f(fb.written.p50)} ms  p99 ${f(fb.written.p99)} ms  mean ${f(fb.written.mean)} ms  (n=${fb.written.n}; goal 20 ms)`);
    console.log(`POST -> 'started' event ${f(fb.started)} ms;  POST -> first stdout event ${f(fb.firstOutput)} ms`);

    console.log(`\nfiles (${FILE_MIB} MiB, best of 3; goal 50 MiB/s)`);
    for (const [label, origin] of [['through wrangler dev\'s entry proxy', stack.origin], ['the Worker\'s own listener', stack.inner]] as const) {
      if (!origin) continue;
      const file = await fileThroughput(stack, origin, base);
      console.log(
        `${label.padEnd(34)} upload (raw body) ${file.up.toFixed(1).padStart(7)} MiB/s | download ${file.down.toFixed(1).padStart(7)} MiB/s (byte-exact: ${file.exact}) | local copy (Node streams) ${file.local.toFixed(1).padStart(7)} MiB/s`,
      );
    }

    const o = stats(online.times);
    console.log(`\nagent start -> host online (${ONLINE_RUNS} runs, GET every 5 ms): p50 ${f(o.p50)} ms  min ${f(Math.min(...online.times))} ms  max ${f(Math.max(...online.times))} ms`);
    console.log(`install.sh (download and check the one-file agent): ${f(installMs)} ms`);
  } finally {
    await agent?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
    await stack.stop();
  }
}

await main();
