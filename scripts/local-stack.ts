/**
 * Running Hangar on this machine: the real Worker under `wrangler dev`
 * (workerd, local D1 and Durable Objects), migrations applied, a tenant and a
 * fleet host seeded through the operator API, and a real host agent. Used by
 * `npm start`, the end-to-end tests and the benchmarks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..');
const WRANGLER = path.join(ROOT, 'node_modules', '.bin', 'wrangler');
/**
 * The dev server's environment. Its local observability (on by default) hands
 * every invocation — each request, each message on an agent's socket — to a
 * collector that stores it in SQLite in the same process: more than half the
 * CPU a small relayed request costs the Worker's process, and nothing a
 * deployment pays. Off unless X_LOCAL_OBSERVABILITY is set.
 */
const QUIET_ENV = {
  ...process.env,
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_SEND_METRICS: 'false',
  NO_COLOR: '1',
  X_LOCAL_OBSERVABILITY: process.env.X_LOCAL_OBSERVABILITY ?? 'false',
};

export interface Secrets {
  OPERATOR_TOKEN: string;
  JWT_SECRET: string;
  ENV_ENCRYPTION_KEY: string;
}

/** Secrets of a local state dir, made once and kept, so stored env values stay decryptable across restarts. */
export function localSecrets(stateDir: string): Secrets {
  const file = path.join(stateDir, 'secrets.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Secrets;
  mkdirSync(stateDir, { recursive: true });
  const s: Secrets = {
    OPERATOR_TOKEN: `op_${randomBytes(24).toString('base64url')}`,
    JWT_SECRET: randomBytes(32).toString('base64url'),
    ENV_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  };
  writeFileSync(file, JSON.stringify(s, null, 2), { mode: 0o600 });
  return s;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[], opts: { quiet?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: ROOT, env: QUIET_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${code}):\n${out}`))));
    if (!opts.quiet) p.stdout.pipe(process.stdout);
  });
}

/**
 * Overcommit of the stacks this file starts (npm start, the tests, the
 * benchmarks), set explicitly: a development machine of 2 CPUs and 24 GiB
 * runs a handful of mostly idle computers of 1-4 vCPUs and 4-16 GiB each,
 * which a deployment's defaults (4x CPU, no memory overcommit; wrangler.toml)
 * would refuse after five. The capacity tests use hosts of known sizes.
 */
export const LOCAL_OVERCOMMIT = { CPU_OVERCOMMIT: '16', MEMORY_OVERCOMMIT: '8' } as const;

export interface WorkerHandle {
  origin: string;
  apiUrl: string;
  secrets: Secrets;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Applies D1 migrations to the state dir and starts `wrangler dev` on it; resolves once /health answers. */
export async function startWorker(opts: { stateDir: string; port: number; vars?: Record<string, string>; log?: (s: string) => void }): Promise<WorkerHandle> {
  const { stateDir, port } = opts;
  const secrets = localSecrets(stateDir);
  const envFile = path.join(stateDir, 'dev.vars');
  // Computers' URLs as this server answers them: http, *.localhost names (curl and Chromium send those to loopback), its port.
  const urls = { URL_SCHEME: 'http', PREVIEW_DOMAIN: `localhost:${port}`, COMPUTER_DOMAIN: `computers.localhost:${port}` };
  const vars = { ...LOCAL_OVERCOMMIT, ...secrets, ...urls, ...opts.vars };
  writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n') + '\n', { mode: 0o600 });
  await run(WRANGLER, ['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', stateDir], { quiet: true });
  const child = spawn(
    WRANGLER,
    ['dev', '--ip', '127.0.0.1', '--port', String(port), '--persist-to', stateDir, '--env-file', envFile, '--show-interactive-dev-session=false', '--log-level', 'warn'],
    { cwd: ROOT, env: QUIET_ENV, stdio: ['ignore', 'pipe', 'pipe'], detached: false },
  );
  const log = opts.log ?? (() => {});
  child.stdout?.on('data', (d: Buffer) => log(d.toString()));
  child.stderr?.on('data', (d: Buffer) => log(d.toString()));
  const origin = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${origin}/api/v1/health`);
      if (r.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error('wrangler dev did not answer /api/v1/health within 60 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return { origin, apiUrl: `${origin}/api/v1`, secrets, process: child, stop: () => stopChild(child) };
}

export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill(signal);
  });
}

/** Calls the operator API; throws with the error envelope's message on failure. */
export async function operator<T>(origin: string, token: string, method: string, p: string, body?: unknown): Promise<T> {
  const r = await fetch(`${origin}/api/v1/admin${p}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`operator ${method} ${p}: ${r.status} ${text}`);
  const parsed = JSON.parse(text) as { data?: T } & T;
  return (parsed.data ?? parsed) as T;
}

export interface Tenant {
  org_id: string;
  api_key: string;
}

/** An organization with credits and a live API key. */
export async function seedTenant(origin: string, token: string, opts: { name: string; credits?: number; rate_limit_per_minute?: number }): Promise<Tenant> {
  const slug = `${opts.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${randomBytes(3).toString('hex')}`;
  const org = await operator<{ id: string }>(origin, token, 'POST', '/organizations', {
    name: opts.name,
    slug,
    credits: opts.credits ?? 1000,
    ...(opts.rate_limit_per_minute ? { rate_limit_per_minute: opts.rate_limit_per_minute } : {}),
  });
  const key = await operator<{ key: string }>(origin, token, 'POST', `/organizations/${org.id}/api-keys`, { name: 'default', mode: 'live' });
  return { org_id: org.id, api_key: key.key };
}

/** Registers a fleet host; its key is shown only here. */
export async function registerHost(origin: string, token: string, opts: { name: string; region: string }): Promise<{ id: string; host_key: string }> {
  return operator(origin, token, 'POST', '/hosts', { name: opts.name, region: opts.region });
}

export interface AgentHandle {
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a real host agent process and resolves when it has said `ready` (template built, connected). */
export async function startAgent(opts: {
  origin: string;
  hostKey: string;
  dataDir?: string;
  /** The drivers the host offers (--driver); the agent's default (sandbox) when absent. */
  drivers?: string[];
  log?: (s: string) => void;
  readyTimeoutMs?: number;
}): Promise<AgentHandle> {
  const args = [path.join(ROOT, 'host-agent', 'bin', 'hangar-agent.mjs'), '--api', opts.origin, '--key', opts.hostKey];
  if (opts.dataDir) args.push('--data-dir', opts.dataDir);
  if (opts.drivers) args.push('--driver', opts.drivers.join(','));
  const child = spawn(process.execPath, args, { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = opts.log ?? (() => {});
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`host agent not ready within ${(opts.readyTimeoutMs ?? 600_000) / 1000} s:\n${seen.slice(-4000)}`)), opts.readyTimeoutMs ?? 600_000);
    const onData = (d: Buffer) => {
      const s = d.toString();
      seen += s;
      log(s);
      if (/ ready\n/.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`host agent exited (${code}) before it was ready:\n${seen.slice(-4000)}`));
    });
  });
  return { process: child, stop: () => stopChild(child) };
}
