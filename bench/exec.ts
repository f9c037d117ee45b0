/**
 * Exec through the whole API (HTTP -> Worker -> ComputerObject -> agent
 * socket -> host agent -> guest -> process in the sandbox -> back) beside a
 * plain Node child_process.spawn of the same command on the host, measured in
 * the same run at the same concurrency; then create -> running and
 * stop/start of real computers. It starts its own stack (wrangler dev, a
 * fleet host, a host agent with a data dir of its own) and removes it after.
 * wrangler dev reloads the Worker (dropping every agent socket) whenever a
 * file of the tree changes: failed requests are counted in `errors`.
 *
 *   npm run bench:exec        (as root: computers are sandboxes)
 *   env BENCH_N1=300 BENCH_N16=1000 BENCH_LIFECYCLE=5 BENCH_VERBOSE=1
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SandboxDriver } from '../host-agent/drivers/sandbox.ts';
import { freePort, registerHost, seedTenant, startAgent, startWorker, type AgentHandle, type WorkerHandle } from '../scripts/local-stack.ts';
import { useSharedTemplates } from '../test/shared-template.ts';
import { Api } from './api.ts';

const N1 = Number(process.env.BENCH_N1 ?? 300);
const N16 = Number(process.env.BENCH_N16 ?? 1000);
const WARMUP = 50;
const LIFECYCLE_RUNS = Number(process.env.BENCH_LIFECYCLE ?? 5);
/** BENCH_VERBOSE=1 shows the Worker's and the agent's logs on stderr. */
const log = process.env.BENCH_VERBOSE === '1' ? (s: string) => void process.stderr.write(s) : undefined;

interface Stats {
  p50: number;
  p99: number;
  mean: number;
  perSec: number;
  /** Operations that failed (counted, not timed): e.g. a 502 while wrangler dev reloads the Worker. */
  errors: number;
}


/** Runs `total` operations over `concurrency` workers; latencies in ms of those that succeeded. */
async function measure(concurrency: number, total: number, op: () => Promise<void>): Promise<Stats> {
  const times: number[] = [];
  let next = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < total) {
        const t0 = performance.now();
        try {
          await op();
          times.push(performance.now() - t0);
        } catch (err) {
          if (errors++ < 3) console.error(`  failed: ${(err as Error).message}`);
        }
      }
    }),
  );
  const wall = performance.now() - started;
  return { ...summary(times), perSec: (times.length / wall) * 1000, errors };
}

function summary(times: number[]): Pick<Stats, 'p50' | 'p99' | 'mean'> {
  const s = [...times].sort((a, b) => a - b);
  const pct = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
  return { p50: pct(50), p99: pct(99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

/** A host process, as a program on the host would start it; resolves with its stdout. */
function spawnOnHost(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${file} exited ${code}`))));
  });
}

const ms = (n: number) => n.toFixed(2).padStart(8);

function printExecTable(rows: { command: string; concurrency: number; n: number; api: Stats; spawn: Stats }[]): void {
  console.log('\nexec: API (POST /computers/{id}/exec, sandbox) vs node child_process.spawn on the host');
  console.log('command      conc      n  path       p50 ms   p99 ms  mean ms     req/s  errors | API/spawn p50  mean  req/s');
  for (const r of rows) {
    const line = (label: string, s: Stats) =>
      `${r.command.padEnd(11)} ${String(r.concurrency).padStart(4)} ${String(r.n).padStart(6)}  ${label.padEnd(6)} ${ms(s.p50)} ${ms(s.p99)} ${ms(s.mean)} ${s.perSec.toFixed(0).padStart(9)} ${String(s.errors).padStart(7)}`;
    console.log(line('API', r.api) + `  | ${(r.api.p50 / r.spawn.p50).toFixed(1).padStart(12)}x ${(r.api.mean / r.spawn.mean).toFixed(1).padStart(4)}x ${(r.api.perSec / r.spawn.perSec).toFixed(2).padStart(5)}x`);
    console.log(line('spawn', r.spawn));
  }
}

async function main(): Promise<void> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-'));
  const dataDir = path.join(stateDir, 'data');
  let worker: WorkerHandle | undefined;
  let agent: AgentHandle | undefined;
  let api: Api | undefined;
  const computers: string[] = [];
  try {
    worker = await startWorker({ stateDir, port: await freePort(), log });
    const host = await registerHost(worker.origin, worker.secrets.OPERATOR_TOKEN, { name: 'bench-host', region: 'local' });
    useSharedTemplates(dataDir);
    agent = await startAgent({ origin: worker.origin, hostKey: host.host_key, dataDir, log });
    const tenant = await seedTenant(worker.origin, worker.secrets.OPERATOR_TOKEN, { name: 'bench', rate_limit_per_minute: 1_000_000 });
    api = new Api(worker.apiUrl, tenant.api_key);
    const a = api;

    const first = await a.createRunning('bench');
    computers.push(first.id);
    const id = first.id;
    const commands = [
      { command: 'true', api: () => a.exec(id, 'true'), spawn: () => spawnOnHost('/bin/true', []), expect: '' },
      { command: 'echo hello', api: () => a.exec(id, 'echo hello'), spawn: () => spawnOnHost('/bin/sh', ['-c', 'echo hello']), expect: 'hello\n' },
    ];
    for (const c of commands) {
      if ((await c.api()) !== c.expect || (await c.spawn()) !== c.expect) throw new Error(`${c.command} does not print ${JSON.stringify(c.expect)}`);
      for (let i = 0; i < WARMUP; i++) await Promise.all([c.api(), c.spawn()]);
    }
    const rows = [];
    for (const [concurrency, n] of [[1, N1], [16, N16]] as const) {
      for (const c of commands) {
        const apiStats = await measure(concurrency, n, async () => void (await c.api()));
        const spawnStats = await measure(concurrency, n, async () => void (await c.spawn()));
        rows.push({ command: c.command, concurrency, n, api: apiStats, spawn: spawnStats });
      }
    }
    printExecTable(rows);

    // The local server's own round trip: wrangler dev puts a proxy worker in front of the Worker, which
    // production does not have. An OPTIONS preflight does no work at all, so it measures that floor.
    const preflight = async () => {
      const r = await fetch(`${worker!.apiUrl}/computers/${id}/exec`, { method: 'OPTIONS' });
      await r.arrayBuffer();
    };
    console.log('\nfloor: the local dev server\'s round trip (OPTIONS preflight, answered before any work)');
    for (const [concurrency, n] of [[1, N1], [16, N16]] as const) {
      for (let i = 0; i < WARMUP; i++) await preflight();
      const floor = await measure(concurrency, n, preflight);
      const exec = rows.find((r) => r.command === 'true' && r.concurrency === concurrency)!;
      console.log(
        `conc ${String(concurrency).padStart(2)}: floor p50 ${ms(floor.p50)} ms  p99 ${ms(floor.p99)} ms | exec true p50 minus floor ${ms(exec.api.p50 - floor.p50)} ms (${((exec.api.p50 - floor.p50) / exec.spawn.p50).toFixed(1)}x spawn)`,
      );
    }

    const creates: number[] = [];
    for (let i = 0; i < LIFECYCLE_RUNS; i++) {
      const c = await a.createRunning(`bench-create-${i}`);
      creates.push(c.ms);
      if ((await a.call('DELETE', `/computers/${c.id}`)).status !== 200) computers.push(c.id);
    }
    const stops: number[] = [];
    const starts: number[] = [];
    for (let i = 0; i < LIFECYCLE_RUNS; i++) {
      let t0 = performance.now();
      await a.ok('POST', `/computers/${id}/stop`);
      stops.push(performance.now() - t0);
      t0 = performance.now();
      await a.ok('POST', `/computers/${id}/start`);
      starts.push(performance.now() - t0);
    }
    await a.exec(id, 'true');
    console.log(`\nlifecycle (${LIFECYCLE_RUNS} runs each)`.padEnd(36) + '   p50 ms    min ms    max ms');
    for (const [label, xs] of [['create -> running (GET every 20 ms)', creates], ['POST stop (answers when stopped)', stops], ['POST start (answers when running)', starts]] as const) {
      console.log(`${label.padEnd(36)} ${ms(summary(xs).p50)}  ${ms(Math.min(...xs))}  ${ms(Math.max(...xs))}`);
    }
  } finally {
    for (const id of computers) await api?.call('DELETE', `/computers/${id}`).catch(() => undefined);
    await agent?.stop();
    // Whatever the agent could not remove (it was killed, or a delete failed) goes now.
    const driver = new SandboxDriver({ dataDir });
    for (const id of await driver.list().catch(() => [])) await driver.destroy(id).catch(() => undefined);
    await driver.close();
    await driver.releaseStorage(); // unmounts the disk pool of this data dir, if it has one
    await worker?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
