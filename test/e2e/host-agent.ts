/**
 * Real host-mode agents for end-to-end tests: a tenant host registered
 * through the API, the agent fetched from the API the way a customer gets it
 * (install.sh, one-file agent.mjs) and run by Node ≥ 20 as an unprivileged
 * user of this machine — so the tests show whose permissions apply. The user
 * (HOST_USER) is created once when missing (the suite runs as root, as on
 * CI); each agent gets a fresh home directory of its own, removed after.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stopChild } from '../../scripts/local-stack.ts';
import { hangar, type Client } from './client.ts';

export const HOST_USER = 'hangar-oc-test';

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

let user: TestUser | null = null;

/** The unprivileged user host-mode agents run as, created when this machine has none. */
export function hostUser(): TestUser {
  if (user) return user;
  const id = (flag: string) => Number(execFileSync('id', [flag, HOST_USER], { encoding: 'utf8' }).trim());
  if (spawnSync('id', ['-u', HOST_USER]).status !== 0) {
    // Another run may create it at the same moment: only a user still missing afterwards is an error.
    spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/bin/bash', HOST_USER]);
  }
  user = { name: HOST_USER, uid: id('-u'), gid: id('-g') };
  if (user.uid === 0) throw new Error(`${HOST_USER} must not be root`);
  return user;
}

/** A Node ≥ 20 outside this project, as a customer's machine has it; this test's own Node when there is none. */
export function systemNode(): string {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    if (!existsSync(candidate)) continue;
    const r = spawnSync(candidate, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' });
    if (r.status === 0 && Number(r.stdout.trim()) >= 20) return candidate;
  }
  return process.execPath;
}

export interface HostAgent {
  hostId: string;
  hostKey: string;
  home: string;
  user: TestUser;
  process: ChildProcess;
  /** Everything the agent printed. */
  output(): string;
  /** Resolves with the exit code once the agent has exited. */
  exited: Promise<number | null>;
  /** Drops its connection as a network failure would (SIGUSR2); it reconnects by itself. */
  drop(): void;
  stop(): Promise<void>;
}

function asUser(u: TestUser, home: string, extra: NodeJS.ProcessEnv = {}) {
  return {
    uid: u.uid,
    gid: u.gid,
    cwd: home,
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: home, USER: u.name, LOGNAME: u.name, SHELL: '/bin/bash', LANG: 'C.UTF-8', ...extra },
  };
}

/** A home directory of the test user's own, readable by nobody else. */
export function freshHome(u: TestUser = hostUser()): string {
  const home = mkdtempSync(path.join(os.tmpdir(), 'hangar-oc-home-'));
  chownSync(home, u.uid, u.gid);
  chmodSync(home, 0o700);
  return home;
}

/** Runs install.sh as the test user (`--no-start`): the agent lands in ~/.hangar-agent, checked against its sha256. */
export function installAgent(home: string, hostKey: string, u: TestUser = hostUser()): string {
  const origin = hangar().origin;
  const r = spawnSync('sh', ['-c', `curl -fsS "${origin}/opencomputers/install.sh" | sh -s -- --no-start --key "$KEY"`], {
    ...asUser(u, home, { KEY: hostKey }),
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`install.sh failed (${r.status}): ${r.stderr}`);
  return path.join(home, '.hangar-agent', 'hangar-agent.mjs');
}

/** Registers a tenant host (unless a key is given) and starts its agent as the test user; resolves once it said `ready`. */
export async function startHostAgent(client: Client, opts: { name?: string; hostId?: string; hostKey?: string; args?: string[]; home?: string } = {}): Promise<HostAgent> {
  const u = hostUser();
  let hostId = opts.hostId;
  let hostKey = opts.hostKey;
  if (!hostId || !hostKey) {
    const r = await client.post<{ id: string; host_key: string }>('/opencomputers/hosts', { name: opts.name ?? 'e2e-box' });
    if (r.status !== 201) throw new Error(`register failed: ${r.status} ${JSON.stringify(r.body)}`);
    hostId = r.body.id;
    hostKey = r.body.host_key;
  }
  const home = opts.home ?? freshHome(u);
  const agentFile = installAgent(home, hostKey, u);
  const child = spawn(systemNode(), [agentFile, '--api', hangar().origin, ...(opts.args ?? [])], {
    ...asUser(u, home, { HANGAR_HOST_KEY: hostKey }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let seen = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`host agent not ready within 60 s:\n${seen.slice(-4000)}`)), 60_000);
    const onData = (d: Buffer) => {
      seen += d.toString();
      if (/ ready\n/.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`host agent exited (${code}) before it was ready:\n${seen.slice(-4000)}`));
    });
  });
  return {
    hostId,
    hostKey,
    home,
    user: u,
    process: child,
    output: () => seen,
    exited,
    drop: () => child.kill('SIGUSR2'),
    stop: async () => {
      await stopChild(child);
      if (!opts.home) rmSync(home, { recursive: true, force: true });
    },
  };
}
