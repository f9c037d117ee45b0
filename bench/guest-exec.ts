/**
 * Latency of `true` through SandboxDriver.exec (host agent -> guest socket ->
 * fork/exec as user inside the computer -> result) beside a plain Node
 * child_process.spawn('true') on the host, at concurrency 1 and 16.
 *
 *   sudo npx node bench/guest-exec.ts      (env HANGAR_BENCH_DATA_DIR, default /var/lib/hangar-test)
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { SandboxDriver } from '../host-agent/drivers/sandbox.ts';

const dataDir = process.env.HANGAR_BENCH_DATA_DIR ?? '/var/lib/hangar-test';
const N1 = 500;
const N16 = 2000;

function spawnTrue(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('true', { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', () => resolve());
  });
}

async function measure(concurrency: number, total: number, op: () => Promise<unknown>) {
  const times: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < total) {
        const t0 = performance.now();
        await op();
        times.push(performance.now() - t0);
      }
    }),
  );
  const wall = performance.now() - started;
  times.sort((a, b) => a - b);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))];
  return { p50: pct(50), p99: pct(99), perSec: (total / wall) * 1000 };
}

const fmt = (label: string, r: { p50: number; p99: number; perSec: number }) =>
  `${label.padEnd(34)} p50 ${r.p50.toFixed(2).padStart(6)} ms   p99 ${r.p99.toFixed(2).padStart(6)} ms   ${Math.round(r.perSec)
    .toString()
    .padStart(5)}/s`;

const driver = new SandboxDriver({ dataDir });
const id = randomUUID();
try {
  await driver.prepare((p) => {
    if (p.fraction === 0 || p.fraction === 1) console.error(`[template] ${p.message}`);
  });
  await driver.provision(
    { id, name: 'bench', template: 'miosa-desktop', size: 'medium', vcpus: 2, memory_mb: 8192, selected_apps: [], env: {} },
    undefined,
    () => undefined,
  );
  const exec = () => driver.exec(id, { command: 'true', timeout_s: 30, max_output_bytes: 65536 });
  for (let i = 0; i < 50; i++) await exec(); // warm up caches and the connection
  for (let i = 0; i < 50; i++) await spawnTrue();

  console.log(`exec of \`true\` (${N1} at concurrency 1, ${N16} at concurrency 16)`);
  console.log(fmt('node spawn(true), c=1', await measure(1, N1, spawnTrue)));
  console.log(fmt('SandboxDriver.exec(true), c=1', await measure(1, N1, exec)));
  console.log(fmt('node spawn(true), c=16', await measure(16, N16, spawnTrue)));
  console.log(fmt('SandboxDriver.exec(true), c=16', await measure(16, N16, exec)));
} finally {
  await driver.destroy(id);
  await driver.close();
  await driver.releaseStorage(); // unmounts the disk pool of this data dir, if it has one
}
