/**
 * Both drivers side by side, in one run, through the whole API: a sandbox
 * and a microVM computer each go through create -> running, stop -> start,
 * exec of `true` (p50/p99), keystroke echo on a terminal, and idle memory
 * (what the host pays for one idle computer: the proportional set size of
 * its host processes — QEMU and passt for a VM, the processes of its cgroup
 * for a sandbox) after a boot, and for a VM also after a start that loaded
 * its memory. Figures are printed with the VM/sandbox ratio; the VM
 * line says which accelerator the agent's probe chose. VM creates load the
 * warm image of their shape once the agent has made it (after the first
 * create of the shape, which boots); creates that booted are shown apart.
 * A VM's stop keeping its memory and the start resuming it are measured too. It starts its own
 * stack (wrangler dev, a fleet host, an agent offering both drivers) and
 * removes it after. Desktops start on first use (DESKTOP_START=first-use) for both
 * drivers: what is measured is the computer, not its desktop starting.
 *
 *   npm run bench:vm       (as root)
 *   env BENCH_LIFECYCLE=3 BENCH_EXEC=100 BENCH_ECHO=100 BENCH_VERBOSE=1
 */
import { execFileSync } from 'node:child_process';
import fs, { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ComputerCgroup, detectCgroups } from '../host-agent/drivers/sandbox/cgroups.ts';
import { vmPaths } from '../host-agent/drivers/vm/paths.ts';
import { readState } from '../host-agent/drivers/vm/qemu.ts';
import type { Isolation } from '../schema/isolation.ts';
import { freePort, registerHost, seedTenant, startAgent, startWorker, type AgentHandle, type WorkerHandle } from '../scripts/local-stack.ts';
import { destroyAllOn } from '../test/e2e/isolation-under-test.ts';
import { dial, opened } from '../test/e2e/sockets.ts';
import { useSharedTemplates } from '../test/shared-template.ts';
import { EchoProbe } from './streams/terminal.ts';
import { pct } from './streams/measure.ts';
import { Api } from './api.ts';

const LIFECYCLE = Number(process.env.BENCH_LIFECYCLE ?? 3);
const EXEC_N = Number(process.env.BENCH_EXEC ?? 100);
const ECHO_N = Number(process.env.BENCH_ECHO ?? 100);
const IDLE_MS = 15_000;
const log = process.env.BENCH_VERBOSE === '1' ? (s: string) => void process.stderr.write(s) : undefined;
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

interface Figures {
  create: number[];
  /** VMs: creates that booted (no warm image of their shape yet). */
  createBoot: number[];
  stop: number[];
  start: number[];
  /** VMs only: stop keeping the memory, then start (resume). */
  suspend: number[];
  resume: number[];
  exec: number[];
  echo: number[];
  /** After a boot (a sandbox's start, a VM's cold start). */
  idleBytes: number;
  /** VMs only: after a start that loaded memory (keep_memory, warm images). */
  idleResumedBytes: number;
  note: string;
}

/** Whether a VM computer's current run loaded a memory image (a warm image, or memory it kept) rather than booting. */
function resumed(dataDir: string, id: string): boolean {
  return readState(vmPaths(dataDir, id))?.resumed === true;
}

/** Proportional set size of a process (its share of pages it shares with others), bytes. */
function pss(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** What the host pays for a computer right now: PSS of its host processes. */
function hostMemory(dataDir: string, id: string, isolation: Isolation): number {
  if (isolation === 'vm') {
    const state = readState(vmPaths(dataDir, id));
    return state ? pss(state.pid) + (state.passt_pid ? pss(state.passt_pid) : 0) + (state.pasta_pid ? pss(state.pasta_pid) : 0) : 0;
  }
  return new ComputerCgroup(detectCgroups(), id).pids().reduce((sum, pid) => sum + pss(pid), 0);
}

async function terminalEcho(api: Api, id: string, n: number): Promise<number[]> {
  const session = await api.ok<{ data: { ws_url: string } }>('POST', `/computers/${id}/terminal`, { cols: 200, rows: 50, shell: '/bin/bash' });
  const ws = dial(session.data.ws_url, [], {});
  const probe = new EchoProbe();
  ws.on('message', (d: Buffer) => probe.feed(d.toString('utf8')));
  await opened(ws);
  // A plain `cat` on the PTY: the line discipline echoes each character.
  ws.send('exec cat\r');
  await sleep(1000);
  const times = await probe.run((s) => ws.send(s), n, '\r', 20);
  ws.terminate();
  return times;
}

async function measureDriver(api: Api, dataDir: string, isolation: Isolation, accel: string | null): Promise<Figures> {
  const f: Figures = { create: [], createBoot: [], stop: [], start: [], suspend: [], resume: [], exec: [], echo: [], idleBytes: 0, idleResumedBytes: 0, note: isolation === 'vm' ? `accelerator ${accel}` : 'cgroups on the host kernel' };
  process.stderr.write(`${isolation}: create -> running x${LIFECYCLE}\n`);
  let main = '';
  if (isolation === 'vm') {
    // The first VM of a shape boots; the agent then makes the shape's warm image, which later creates load.
    const since = Date.now();
    const first = await api.createRunning('bench-vm-first', { isolation }, 300_000);
    main = first.id;
    (resumed(dataDir, first.id) ? f.create : f.createBoot).push(first.ms);
    if (!resumed(dataDir, first.id)) {
      const images = path.join(dataDir, 'vm/images');
      const made = () => fs.readdirSync(images).some((n) => n.startsWith('warm-') && fs.statSync(path.join(images, n)).mtimeMs >= since);
      for (let waited = 0; waited < 300 && !made(); waited++) await sleep(1000);
    }
  }
  for (let i = 0; i < LIFECYCLE; i++) {
    const c = await api.createRunning(`bench-${isolation}-${i}`, { isolation }, 300_000);
    (isolation === 'vm' && !resumed(dataDir, c.id) ? f.createBoot : f.create).push(c.ms);
    if (!main) main = c.id;
    else await api.ok('DELETE', `/computers/${c.id}`);
  }
  process.stderr.write(`${isolation}: exec true x${EXEC_N}\n`);
  for (let i = 0; i < 10; i++) await api.exec(main, 'true');
  for (let i = 0; i < EXEC_N; i++) {
    const t0 = performance.now();
    await api.exec(main, 'true');
    f.exec.push(performance.now() - t0);
  }
  process.stderr.write(`${isolation}: terminal echo x${ECHO_N}\n`);
  f.echo = await terminalEcho(api, main, ECHO_N);
  process.stderr.write(`${isolation}: stop -> start x${LIFECYCLE}\n`);
  for (let i = 0; i < LIFECYCLE; i++) {
    let t0 = performance.now();
    await api.ok('POST', `/computers/${main}/stop`);
    f.stop.push(performance.now() - t0);
    t0 = performance.now();
    await api.ok('POST', `/computers/${main}/start`);
    f.start.push(performance.now() - t0);
  }
  process.stderr.write(`${isolation}: idle ${IDLE_MS / 1000} s after a boot, then its host memory\n`);
  await sleep(IDLE_MS);
  f.idleBytes = hostMemory(dataDir, main, isolation);
  if (isolation === 'vm') {
    process.stderr.write(`${isolation}: stop keeping the memory -> start (resume) x${LIFECYCLE}\n`);
    for (let i = 0; i < LIFECYCLE; i++) {
      let t0 = performance.now();
      await api.ok('POST', `/computers/${main}/stop`, { keep_memory: true });
      f.suspend.push(performance.now() - t0);
      t0 = performance.now();
      await api.ok('POST', `/computers/${main}/start`);
      f.resume.push(performance.now() - t0);
    }
    process.stderr.write(`${isolation}: idle ${IDLE_MS / 1000} s after a resume, then its host memory\n`);
    await sleep(IDLE_MS);
    f.idleResumedBytes = hostMemory(dataDir, main, isolation);
  }
  await api.ok('DELETE', `/computers/${main}`);
  return f;
}

function print(s: Figures, v: Figures): void {
  const p50 = (xs: number[]) => pct(xs, 50);
  const row = (label: string, a: number, b: number, unit: string, digits = 1) =>
    console.log(`${label.padEnd(34)} ${a.toFixed(digits).padStart(10)} ${unit.padEnd(4)} ${b.toFixed(digits).padStart(10)} ${unit.padEnd(4)} ${(b / a).toFixed(1).padStart(7)}x`);
  console.log(`\nsandbox: ${s.note}; vm: ${v.note}`);
  console.log(`${''.padEnd(34)} ${'sandbox'.padStart(15)} ${'vm'.padStart(15)}  vm/sandbox`);
  row(`create -> running p50 (n=${s.create.length}/${v.create.length})`, p50(s.create), p50(v.create), 'ms', 0);
  row('create -> running min', Math.min(...s.create), Math.min(...v.create), 'ms', 0);
  if (v.createBoot.length) console.log(`${'(vm creates that booted: no warm image yet)'.padEnd(34)} ${''.padStart(15)} ${p50(v.createBoot).toFixed(0).padStart(10)} ms   n=${v.createBoot.length}`);
  row(`POST stop p50 (n=${s.stop.length})`, p50(s.stop), p50(v.stop), 'ms', 0);
  row(`POST start p50 (n=${s.start.length})`, p50(s.start), p50(v.start), 'ms', 0);
  row(`exec true p50 (n=${s.exec.length})`, p50(s.exec), p50(v.exec), 'ms');
  row('exec true p99', pct(s.exec, 99), pct(v.exec, 99), 'ms');
  row(`terminal echo p50 (n=${s.echo.length})`, p50(s.echo), p50(v.echo), 'ms', 2);
  row('terminal echo p99', pct(s.echo, 99), pct(v.echo, 99), 'ms', 2);
  row('idle memory on the host, booted (PSS)', s.idleBytes / 1048576, v.idleBytes / 1048576, 'MiB');
  console.log(`vm only: stop keeping the memory p50 ${p50(v.suspend).toFixed(0)} ms, start resuming it p50 ${p50(v.resume).toFixed(0)} ms (cold start p50 ${p50(v.start).toFixed(0)} ms)`);
  console.log(`vm only: idle memory after a resume ${(v.idleResumedBytes / 1048576).toFixed(1)} MiB (PSS); ${zeroPageNote()}`);
}

/**
 * QEMU loading a memory image reads every page of guest RAM it is told is zero. A kernel that
 * maps its shared zero page on such reads gives those pages no memory; one that does not (seen
 * on some hosts that are themselves VMs) gives the resumed VM all of its RAM. Said beside the
 * figure, measured in a child reading 64 MiB of untouched memory.
 */
function zeroPageNote(): string {
  try {
    const kib = Number(execFileSync('python3', ['-c', [
      'import mmap, re',
      'm = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)',
      'sum(m[i] for i in range(0, 64 << 20, 4096))',
      "print(re.search(r'RssAnon:\\s+(\\d+)', open('/proc/self/status').read()).group(1))",
    ].join('\n')], { encoding: 'utf8' }).trim());
    return kib > 32 * 1024
      ? `this host's kernel gives memory to pages that are only read (64 MiB read: ${(kib / 1024).toFixed(0)} MiB anonymous), so a VM that loaded memory holds all its RAM here`
      : `this host's kernel maps the zero page for pages only read (64 MiB read: ${(kib / 1024).toFixed(0)} MiB anonymous)`;
  } catch {
    return 'whether this kernel maps the zero page for read pages: unknown (python3 failed)';
  }
}

async function main(): Promise<void> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-vm-'));
  const dataDir = path.join(stateDir, 'data');
  let worker: WorkerHandle | undefined;
  let agent: AgentHandle | undefined;
  try {
    // The computers themselves, not their desktops: with DESKTOP_START=boot (the default) a VM
    // under emulation spends its first minute starting its desktop on its vCPU. Both drivers alike.
    worker = await startWorker({ stateDir, port: await freePort(), vars: { DESKTOP_START: 'first-use' }, log });
    const host = await registerHost(worker.origin, worker.secrets.OPERATOR_TOKEN, { name: 'bench-host', region: 'local' });
    useSharedTemplates(dataDir);
    agent = await startAgent({ origin: worker.origin, hostKey: host.host_key, dataDir, drivers: ['sandbox', 'vm'], log });
    const tenant = await seedTenant(worker.origin, worker.secrets.OPERATOR_TOKEN, { name: 'bench', credits: 100_000, rate_limit_per_minute: 1_000_000 });
    const api = new Api(worker.apiUrl, tenant.api_key);
    const hostView = await fetch(`${worker.apiUrl}/admin/hosts/${host.id}`, { headers: { authorization: `Bearer ${worker.secrets.OPERATOR_TOKEN}` } });
    const accel = ((await hostView.json()) as { data: { vm_accel: string | null } }).data.vm_accel;
    const sandbox = await measureDriver(api, dataDir, 'sandbox', null);
    const vm = await measureDriver(api, dataDir, 'vm', accel);
    print(sandbox, vm);
    console.log(`(host: ${os.cpus().length} cores, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end)`);
  } finally {
    await agent?.stop();
    await destroyAllOn(dataDir).catch(() => undefined);
    await worker?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
