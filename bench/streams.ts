/**
 * Live output, measured on a stack of its own (wrangler dev, a real agent, a
 * real sandbox), each figure beside a baseline measured in the same run:
 * SSE fan-out, streaming throughput with relay memory, keystroke echo, PTY
 * throughput, agent reconnect. Ends with the issue's goals, met or not.
 *
 *   npm run bench:streams          (as root: computers are sandboxes)
 *   env BENCH_MIB=512 BENCH_PTY_MIB=128 BENCH_ECHO=1000 BENCH_DROPS=20 BENCH_ISOLATED=5 BENCH_ONLY=echo,pty BENCH_VERBOSE=1
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fanoutBaseline, fanoutHangar, type Fanout } from './streams/fanout.ts';
import { RssSampler, mib, ms, pct, printRss, row } from './streams/measure.ts';
import { reconnects } from './streams/reconnect.ts';
import { STATE_ON, startStack, type Stack } from './streams/stack.ts';
import { echoExecTty, echoGuest, echoTerminal, echoWs, ptyLocal, ptyTerminal } from './streams/terminal.ts';
import { mibps, viaExecSocket, viaLocalPipe, viaSse, type Throughput } from './streams/throughput.ts';

const MIB = Number(process.env.BENCH_MIB ?? 512);
const PTY_MIB = Number(process.env.BENCH_PTY_MIB ?? 128);
/** A size whose SSE events (~1.56 x the base64 text) fit the object's 64 MiB event log. */
const FIT_MIB = Number(process.env.BENCH_FIT_MIB ?? 24);
const ECHO_N = Number(process.env.BENCH_ECHO ?? 1000);
const DROPS = Number(process.env.BENCH_DROPS ?? 20);
const ISOLATED = Number(process.env.BENCH_ISOLATED ?? 5);
/** BENCH_ONLY=fanout,echo,throughput,pty,reconnect runs a subset. */
const ONLY = process.env.BENCH_ONLY?.split(',') ?? null;
const runs = (part: string) => ONLY === null || ONLY.includes(part);

const goals: string[] = [];
const goal = (met: boolean, text: string) => goals.push(`  [${met ? 'met' : 'NOT met'}] ${text}`);

/** Starts baseline-server.ts as a child; resolves with its base URL. */
async function baselineServer(): Promise<{ base: string; stop(): void }> {
  const child = spawn(process.execPath, [path.join(import.meta.dirname, 'streams', 'baseline-server.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await new Promise<string>((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
  return { base: `http://127.0.0.1:${(JSON.parse(first) as { port: number }).port}`, stop: () => void child.kill() };
}

const fan = (f: Fanout) =>
  `spread p50 ${ms(f.spreadP50)} max ${ms(f.spreadMax)}; emit->last p50 ${ms(f.lagLastP50)} max ${ms(f.lagLastMax)}${f.incomplete ? `; ${f.incomplete} incomplete` : ''}`;
const tput = (t: Throughput) => `${mibps(t).toFixed(1)} MiB/s (${mib(t.bytes)} in ${t.seconds.toFixed(1)} s)`;
const lat = (v: number[]) => `p50 ${ms(pct(v, 50))} p99 ${ms(pct(v, 99))}`;

async function fanout(stack: Stack, base: string): Promise<void> {
  console.log('\nSSE fan-out of one command to N viewers (20 events; spread = first viewer has it -> last viewer has it)');
  for (const n of [100, 1000]) {
    const ours = await fanoutHangar(stack, n);
    const theirs = await fanoutBaseline(base, n);
    console.log(`  ${n} viewers`);
    console.log(`    hangar:   ${fan(ours)}`);
    console.log(`    baseline: ${fan(theirs)}  (plain Node http SSE server)`);
    if (n === 1000 && stack.inner) console.log(`    hangar, wrangler's entry proxy skipped: ${fan(await fanoutHangar(stack, n, stack.inner))}`);
    if (n === 1000) goal(ours.spreadMax <= 150 && ours.incomplete === 0, `1000-viewer fan-out within 150 ms: spread max ${ms(ours.spreadMax)}, emit->last max ${ms(ours.lagLastMax)}`);
  }
}

async function echo(stack: Stack, base: string): Promise<void> {
  console.log(`\nKeystroke echo round trip (${ECHO_N} single characters to \`cat\` on a PTY, echoed by the line discipline)`);
  const step = <T>(what: string, run: () => Promise<T>): Promise<T> => {
    process.stderr.write(`  … ${what}\n`);
    return run();
  };
  const term = await step('terminal socket', () => echoTerminal(stack, ECHO_N));
  const direct = stack.inner ? await step('terminal socket, direct', () => echoTerminal(stack, ECHO_N, stack.inner!)) : null;
  const execTty = await step('exec socket', () => echoExecTty(stack, ECHO_N));
  const guest = await step('guest socket', () => echoGuest(stack, ECHO_N));
  const ws = await step('ws echo server', () => echoWs(base, ECHO_N));
  row('terminal socket (Worker, DO, agent, guest)', lat(term), `ws echo server ${lat(ws)}`);
  if (direct) row("terminal socket, wrangler's entry proxy skipped", lat(direct), `ws echo server ${lat(ws)}`);
  row('exec socket, tty=true', lat(execTty), `ws echo server ${lat(ws)}`);
  row('guest socket directly (no Worker, no agent)', lat(guest), '-');
  goal(pct(term, 50) <= 2, `keystroke echo p50 within 2 ms: ${ms(pct(term, 50))} (guest+PTY alone ${ms(pct(guest, 50))})`);
}

async function throughput(stack: Stack): Promise<void> {
  console.log(`\nStreaming throughput of \`base64\` of a ${MIB} MiB random file (MiB/s of output bytes received, sha256 checked)`);
  await stack.sh(`head -c ${MIB}M /dev/urandom > /tmp/f`);
  const inside = (await stack.sh('base64 /tmp/f | sha256sum')).split(' ')[0];
  const size = Number(await stack.sh('base64 /tmp/f | wc -c'));
  const produce = Number(await stack.sh("TIMEFORMAT=%R; { time base64 /tmp/f > /dev/null; } 2>&1"));
  const hostFile = path.join(os.tmpdir(), `hangar-bench-${process.pid}`);
  await viaLocalPipe('sh', ['-c', `head -c ${MIB}M /dev/urandom > ${hostFile}`]);
  const local = await viaLocalPipe('base64', [hostFile]);
  rmSync(hostFile, { force: true });

  const relays = { ...stack.workerd, 'host agent': stack.agentPid };
  let sampler = new RssSampler(relays);
  const sse = await viaSse(stack, 'base64 /tmp/f');
  const sseRss = sampler.stop();
  sampler = new RssSampler(relays);
  const sock = await viaExecSocket(stack, 'base64 /tmp/f');
  const sockRss = sampler.stop();

  const ok = (t: Throughput) =>
    t.sha256 === inside ? 'sha256 equal' : `sha256 DIFFERS: ${mib(size - t.bytes)} missing${t.skipped ? `, ${t.skipped} events skipped` : ''} (${t.ending})`;
  row('SSE (line events, stored, then acked)', `${tput(sse)} ${ok(sse)}`, `local pipe ${tput(local)}`);
  printRss(sseRss);
  row('exec WebSocket (raw frames)', `${tput(sock)} ${ok(sock)}`, `local pipe ${tput(local)}`);
  printRss(sockRss);
  console.log(`    (the producer alone, base64 > /dev/null inside the computer: ${(MIB * 4 / 3 / produce).toFixed(0)} MiB/s)`);

  await stack.sh(`head -c ${FIT_MIB}M /dev/urandom > /tmp/g`);
  const fitSum = (await stack.sh('base64 /tmp/g | sha256sum')).split(' ')[0];
  sampler = new RssSampler(relays);
  const fit = await viaSse(stack, 'base64 /tmp/g');
  const fitRss = sampler.stop();
  row(`SSE, ${FIT_MIB} MiB file (fits the 64 MiB event log)`, `${tput(fit)} ${fit.sha256 === fitSum ? 'sha256 equal' : `sha256 DIFFERS, ${fit.skipped} events skipped`}`, `local pipe ${tput(local)}`);
  printRss(fitRss);
  const grew = Math.max(...sseRss.map((r) => r.anonPeak - r.anonBefore));
  goal(mibps(sse) >= 50 && sse.sha256 === inside, `SSE throughput >= 50 MiB/s, lossless, memory bounded: ${mibps(sse).toFixed(1)} MiB/s; relay heap (anonymous RSS) grew at most ${mib(grew)} for ${mib(sse.bytes)} streamed`);
  await stack.sh('rm -f /tmp/f /tmp/g');
}

async function pty(stack: Stack): Promise<void> {
  console.log(`\nPTY throughput: \`cat\` of base64 of ${PTY_MIB} MiB (stty -opost) through a terminal socket`);
  await stack.sh(`head -c ${PTY_MIB}M /dev/urandom | base64 > /tmp/p.b64`);
  const inside = (await stack.sh('sha256sum /tmp/p.b64')).split(' ')[0];
  const hostFile = path.join(os.tmpdir(), `hangar-bench-pty-${process.pid}`);
  await viaLocalPipe('sh', ['-c', `head -c ${PTY_MIB}M /dev/urandom | base64 > ${hostFile}`]);
  const local = await ptyLocal(hostFile);
  rmSync(hostFile, { force: true });
  const sampler = new RssSampler({ ...stack.workerd, 'host agent': stack.agentPid });
  const term = await ptyTerminal(stack, '/tmp/p.b64');
  const rss = sampler.stop();
  row('terminal socket', `${tput(term)} ${term.sha256 === inside ? 'sha256 equal' : 'sha256 DIFFERS'}`, `local PTY (script) ${tput(local)}`);
  printRss(rss);
  await stack.sh('rm -f /tmp/p.b64');
}

async function reconnect(stack: Stack): Promise<void> {
  console.log('\nAgent reconnect after SIGUSR2 (signal -> first successful exec through the API)');
  const burst = await reconnects(stack, DROPS, 1000);
  row(`${DROPS} drops, 1 s apart (backoff grows)`, `${lat(burst)} max ${ms(Math.max(...burst))}`, '-');
  const isolated = await reconnects(stack, ISOLATED, 11_000);
  row(`${ISOLATED} drops, 11 s apart (backoff starts over)`, `${lat(isolated)} max ${ms(Math.max(...isolated))}`, '-');
  goal(pct(burst, 99) <= 2000, `reconnect within 2 s at p99: ${ms(pct(burst, 99))} (drops 1 s apart)`);
}

const stack = await startStack();
const baseline = await baselineServer();
// A promise nobody will settle must show as a hang, not end the process with the stack left running.
const alive = setInterval(() => {}, 60_000);
const interrupted = async () => {
  baseline.stop();
  await stack.stop();
  process.exit(130);
};
process.once('SIGINT', () => void interrupted());
process.once('SIGTERM', () => void interrupted());
process.once('uncaughtException', (err) => {
  console.error(err);
  void interrupted();
});
try {
  console.log(`bench:streams on ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; dev server state on ${STATE_ON}; relays: ${JSON.stringify({ ...stack.workerd, agent: stack.agentPid })}`);
  if (runs('fanout')) await fanout(stack, baseline.base);
  if (runs('echo')) await echo(stack, baseline.base);
  if (runs('throughput')) await throughput(stack);
  if (runs('pty')) await pty(stack);
  if (runs('reconnect')) await reconnect(stack);
  console.log('\nGoals');
  for (const g of goals) console.log(g);
} finally {
  clearInterval(alive);
  baseline.stop();
  await stack.stop();
}
