/**
 * Inference figures, each beside its baseline measured in the same run:
 *  - time to first token: streamed chat straight to a model server vs the
 *    same through the cluster proxy (p50/p99);
 *  - chunk forwarding delay: a clock server stamps each chunk as it writes
 *    it; the client subtracts on arrival (one machine, one clock), straight
 *    vs through the proxy;
 *  - requests/s through the proxy with two members vs one.
 *
 *   npm run bench:inference            (BENCH_N=… requests per figure, BENCH_SECONDS=… per throughput run)
 *
 * First with the cluster routing module behind a plain Node front (loopback
 * fetch as its transport), then through a real stack's inference_url, where
 * the same module runs in the Worker and the relay carries the bytes
 * (BENCH_URL=0 skips that part; it needs root, like the e2e tests).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ManagedModelServer } from '../host-agent/model-server/managed-server.ts';
import { serveProxy } from '../test/inference/proxy-front.ts';
import { TablePicker } from '../test/inference/table-picker.ts';
import { freshHome, installAgent, runHostModeAgent, type HostModeAgent } from '../scripts/host-mode-agent.ts';
import { startStack } from './streams/stack.ts';

const N = Number(process.env.BENCH_N ?? 60);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const ms = (x: number) => `${x.toFixed(2)} ms`;

/** Milliseconds from sending a streamed chat request to its first content chunk. */
async function ttft(base: string, auth: Record<string, string> = {}): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${base}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, stream: true }) });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let first = -1;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    if (first < 0 && /"content":"[^"]/.test(buf)) first = performance.now() - t0;
  }
  return first;
}

/** A server that streams `chunks` SSE chunks, each carrying the wall time (ms, sub-ms precision) it was written at. */
async function clockServer(chunks: number, gapMs: number): Promise<{ port: number; close: () => void }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/health') return res.end('{"status":"ok","busy":0,"queued":0,"slots":64}');
    req.resume();
    res.socket?.setNoDelay(true);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    const tick = () => {
      if (i++ >= chunks) return res.end('data: [DONE]\n\n');
      res.write(`data: {"sent":${performance.timeOrigin + performance.now()}}\n\n`);
      setTimeout(tick, gapMs);
    };
    tick();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

/** Arrival minus writing time of each chunk of one streamed answer. */
async function chunkDelays(base: string): Promise<number[]> {
  const res = await fetch(`${base}/chat/completions`, { method: 'POST', body: '{}' });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const out: number[] = [];
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    const now = performance.timeOrigin + performance.now();
    buf += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buf.indexOf('\n\n')) !== -1) {
      const m = /"sent":([0-9.]+)/.exec(buf.slice(0, end));
      buf = buf.slice(end + 2);
      if (m) out.push(now - Number(m[1]));
    }
  }
}

/** Completed requests per second with `concurrency` clients for SECONDS. */
async function throughput(base: string, concurrency: number, auth: Record<string, string> = {}): Promise<number> {
  const until = performance.now() + SECONDS * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const r = await fetch(`${base}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 24 }) });
        await r.arrayBuffer();
        if (r.status === 200) done++;
      }
    }),
  );
  return done / SECONDS;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-inference-'));
  const servers = [0, 1].map(() => new ManagedModelServer({ model: 'hangar-tiny', modelsDir: dir, slots: 2, threads: 1 }));
  const closers: Array<() => unknown> = [];
  try {
    for (const s of servers) await s.start();
    const one = new TablePicker();
    one.report('a', { state: 'ready', port: servers[0].port, slots: 2 });
    const two = new TablePicker();
    two.report('a', { state: 'ready', port: servers[0].port, slots: 2 });
    two.report('b', { state: 'ready', port: servers[1].port, slots: 2 });
    const front1 = await serveProxy(one);
    const front2 = await serveProxy(two);
    closers.push(front1.close, front2.close);
    const direct = `${servers[0].baseUrl()}/v1`;

    console.log(`hangar-tiny on llama.cpp, ${os.cpus().length} cores; ${N} requests a figure`);
    for (let i = 0; i < 5; i++) (await ttft(direct), await ttft(front1.url));
    const d: number[] = [];
    const p: number[] = [];
    for (let i = 0; i < N; i++) {
      // Interleaved, so both paths see the same machine load.
      d.push(await ttft(direct));
      p.push(await ttft(front1.url));
    }
    console.log(`time to first token  direct p50 ${ms(pct(d, 50))} p99 ${ms(pct(d, 99))} | via proxy p50 ${ms(pct(p, 50))} p99 ${ms(pct(p, 99))} | added p50 ${ms(pct(p, 50) - pct(d, 50))} (goal ≤ 10 ms)`);

    const clock = await clockServer(50, 5);
    closers.push(clock.close);
    const cp = new TablePicker();
    cp.report('clock', { state: 'ready', port: clock.port, slots: 64 });
    const clockFront = await serveProxy(cp);
    closers.push(clockFront.close);
    const cd: number[] = [];
    const cpx: number[] = [];
    for (let i = 0; i < Math.max(3, Math.round(N / 10)); i++) {
      cd.push(...(await chunkDelays(`http://127.0.0.1:${clock.port}/v1`)));
      cpx.push(...(await chunkDelays(clockFront.url)));
    }
    console.log(`chunk delay          direct p50 ${ms(pct(cd, 50))} p99 ${ms(pct(cd, 99))} | via proxy p50 ${ms(pct(cpx, 50))} p99 ${ms(pct(cpx, 99))} | forwarding p50 ${ms(pct(cpx, 50) - pct(cd, 50))} (goal ≤ 5 ms)`);

    const r1 = await throughput(front1.url, 4);
    const r2 = await throughput(front2.url, 4);
    console.log(`requests/s (24 tokens, 4 clients)  one member ${r1.toFixed(1)} | two members ${r2.toFixed(1)} | ratio ${(r2 / r1).toFixed(2)}x (goal ≥ 1.6x)`);
    if (process.env.BENCH_URL !== '0') await throughInferenceUrl(servers, direct);
  } finally {
    for (const c of closers) await c();
    for (const s of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The same figures through a real deployment's inference_url: the Worker
 * (wrangler dev), the cluster's object, each member host's object and its
 * host-mode agent (the one-file agent, run as an unprivileged user, given the
 * model servers above with --model-server) relaying to the server.
 */
async function throughInferenceUrl(servers: ManagedModelServer[], direct: string): Promise<void> {
  const stack = await startStack();
  const agents: HostModeAgent[] = [];
  try {
    const hostIds: string[] = [];
    for (const s of servers) {
      const host = await stack.call<{ id: string; host_key: string }>('POST', '/opencomputers/hosts', { name: `bench-gpu-${hostIds.length}` });
      if (host.status !== 201) throw new Error(`register: ${host.status} ${JSON.stringify(host.body)}`);
      const home = freshHome();
      const agentFile = installAgent(stack.origin, home, host.body.host_key);
      agents.push(await runHostModeAgent({ origin: stack.origin, hostKey: host.body.host_key, agentFile, home, args: ['--model-server', s.baseUrl()], removeHome: true }));
      hostIds.push(host.body.id);
    }
    const make = async (name: string, ids: string[]) => {
      const c = await stack.call<{ id: string; inference_url: string }>('POST', '/opencomputers/clusters', { name, model: 'hangar-tiny', host_ids: ids });
      if (c.status !== 201) throw new Error(`cluster: ${c.status} ${JSON.stringify(c.body)}`);
      const deadline = Date.now() + 120_000;
      for (;;) {
        const g = await stack.call<{ status: string; members: Array<{ state: string }> }>('GET', `/opencomputers/clusters/${c.body.id}`);
        if (g.body.status === 'active' && g.body.members.every((m) => m.state === 'ready')) break;
        if (Date.now() > deadline) throw new Error(`cluster ${name} not active: ${JSON.stringify(g.body)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      return c.body.inference_url;
    };
    const one = await make('bench-one', hostIds.slice(0, 1));
    const two = await make('bench-two', hostIds);
    const auth = { authorization: `Bearer ${stack.key}` };
    for (let i = 0; i < 5; i++) (await ttft(direct), await ttft(one, auth));
    const d: number[] = [];
    const u: number[] = [];
    for (let i = 0; i < N; i++) {
      d.push(await ttft(direct));
      u.push(await ttft(one, auth));
    }
    console.log(`\nthrough inference_url (wrangler dev, relay over the host agents' links)`);
    console.log(`time to first token  direct p50 ${ms(pct(d, 50))} p99 ${ms(pct(d, 99))} | via inference_url p50 ${ms(pct(u, 50))} p99 ${ms(pct(u, 99))} | added p50 ${ms(pct(u, 50) - pct(d, 50))} (goal ≤ 10 ms)`);
    const r1 = await throughput(one, 4, auth);
    const r2 = await throughput(two, 4, auth);
    console.log(`requests/s (24 tokens, 4 clients)  one member ${r1.toFixed(1)} | two members ${r2.toFixed(1)} | ratio ${(r2 / r1).toFixed(2)}x (goal ≥ 1.6x)`);
  } finally {
    for (const a of agents) await a.stop().catch(() => {});
    await stack.stop();
  }
}

await main();
