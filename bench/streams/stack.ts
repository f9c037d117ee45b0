/**
 * A Hangar of the bench's own: wrangler dev on a fresh state dir, a fleet
 * host, a real agent (shared template), a tenant with a high rate limit and
 * one running computer; `stop` destroys the computer and everything else.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { freePort, registerHost, seedTenant, startAgent, startWorker } from '../../scripts/local-stack.ts';
import { useSharedTemplates } from '../../test/shared-template.ts';
import { listeningPorts } from '../../scripts/proc-net.ts';
import { latencyProxy, type LatencyProxy } from '../relay/latency-proxy.ts';

const log = process.env.BENCH_VERBOSE === '1' ? (s: string) => void process.stderr.write(s) : undefined;

export interface Stack {
  origin: string;
  apiUrl: string;
  key: string;
  computerId: string;
  dataDir: string;
  agentPid: number;
  /** The dev server (wrangler) process, parent of its workerd processes. */
  workerPid: number;
  /** workerd processes of the dev server, by role. */
  workerd: Record<string, number>;
  /** The Worker's own listener behind wrangler dev's entry proxy (null when not found): the same API one hop shorter. */
  inner: string | null;
  /** A JSON API call with the tenant's key. */
  call<T>(method: string, p: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** Runs a command in the computer (POST /exec); throws unless it exits 0. */
  sh(command: string, timeout?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Descendants of `root` named workerd, labelled by whether they serve the public port. */
function workerdOf(root: number, port: number): Record<string, number> {
  const parent = new Map<number, number>();
  const args = new Map<number, string>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      args.set(Number(d), readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' '));
    } catch {
      /* gone */
    }
  }
  const under = (pid: number): boolean => pid === root || (parent.has(pid) && pid > 1 && under(parent.get(pid)!));
  const out: Record<string, number> = {};
  for (const [pid, cmd] of args) {
    if (!cmd.includes('workerd serve') || !under(pid)) continue;
    out[cmd.includes(`entry=127.0.0.1:${port} `) ? 'workerd (entry proxy)' : 'workerd (Worker + DOs)'] = pid;
  }
  return out;
}

/** The listener of the Worker's own workerd that answers the API. */
async function innerOrigin(pid: number | undefined): Promise<string | null> {
  for (const port of pid ? listeningPorts(pid) : []) {
    const ok = await fetch(`http://127.0.0.1:${port}/api/v1/health`).then((r) => r.ok, () => false);
    if (ok) return `http://127.0.0.1:${port}`;
  }
  return null;
}

/**
 * Where the dev server keeps its D1 and Durable Object SQLite files. On a VM's
 * virtual disk, the kernel's writeback of those files costs as much CPU as the
 * relay itself and competes with it for the same cores; production storage is
 * not on the host's cores at all. So by default the bench keeps them in
 * memory (/dev/shm); BENCH_STATE=disk keeps them on disk as `npm start` does.
 */
export const STATE_ON = process.env.BENCH_STATE === 'disk' || !existsSync('/dev/shm') ? 'disk' : 'tmpfs';

export interface StackOptions {
  /** Round trip added between the agent and the dev server (a delaying proxy), as between a host and the edge. */
  agentRttMs?: number;
  /** Worker vars for this stack (e.g. a larger upload limit). */
  vars?: Record<string, string>;
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const vars = opts.vars ?? {};
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'hangar-bench-'));
  const stateDir = STATE_ON === 'disk' ? path.join(tmp, 'state') : mkdtempSync('/dev/shm/hangar-bench-');
  const port = await freePort();
  const worker = await startWorker({ stateDir, port, log, vars });
  const token = worker.secrets.OPERATOR_TOKEN;
  const host = await registerHost(worker.origin, token, { name: 'bench-host', region: 'local' });
  const dataDir = path.join(tmp, 'data');
  useSharedTemplates(dataDir);
  const proxy: LatencyProxy | null = opts.agentRttMs ? await latencyProxy(new URL(worker.origin).host, opts.agentRttMs) : null;
  const agent = await startAgent({ origin: proxy?.origin ?? worker.origin, hostKey: host.host_key, dataDir, log });
  const tenant = await seedTenant(worker.origin, token, { name: 'bench', credits: 100_000, rate_limit_per_minute: 1_000_000 });

  const call = async <T>(method: string, p: string, body?: unknown) => {
    const r = await fetch(worker.apiUrl + p, {
      method,
      headers: { authorization: `Bearer ${tenant.api_key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: (text ? JSON.parse(text) : {}) as T };
  };

  const created = await call<{ id: string }>('POST', '/computers', { name: 'bench', template_type: 'miosa-desktop', size: 'medium' });
  if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.body)}`);
  const computerId = created.body.id;
  for (let status = ''; status !== 'running'; ) {
    await new Promise((r) => setTimeout(r, 200));
    status = (await call<{ status: string }>('GET', `/computers/${computerId}`)).body.status;
    if (status === 'error') throw new Error('the computer went to error');
  }

  const sh = async (command: string, timeout = 300) => {
    const r = await call<{ output: string; exit_code: number }>('POST', `/computers/${computerId}/exec`, { command, timeout });
    if (r.status !== 200 || r.body.exit_code !== 0) throw new Error(`\`${command}\`: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.output;
  };

  const workerd = workerdOf(worker.process.pid!, port);
  return {
    origin: worker.origin,
    apiUrl: worker.apiUrl,
    key: tenant.api_key,
    computerId,
    dataDir,
    agentPid: agent.process.pid!,
    workerPid: worker.process.pid!,
    workerd,
    inner: await innerOrigin(workerd['workerd (Worker + DOs)']),
    call,
    sh,
    stop: async () => {
      await call('DELETE', `/computers/${computerId}`).catch(() => undefined);
      await agent.stop();
      await proxy?.close();
      const driver = new SandboxDriver({ dataDir });
      for (const id of await driver.list()) await driver.destroy(id).catch(() => undefined);
      await driver.close();
      await driver.releaseStorage(); // unmounts the disk pool of this data dir, if it has one
      await worker.stop();
      rmSync(stateDir, { recursive: true, force: true });
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}
