/**
 * A host-mode agent (OpenComputers) as a customer runs it: fetched from the
 * API with install.sh, started by a Node ≥ 20 of the system, as an
 * unprivileged user of this machine. Used by the end-to-end tests and the
 * OpenComputers bench. The user (HOST_USER) is created once when missing
 * (this needs root, as the test suite has); every agent gets a fresh home.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stopChild } from './local-stack.ts';

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

let node: string | null = null;

/**
 * A Node ≥ 20 the user can run, outside this project, as a customer's machine
 * has it; when the machine has none, a copy of this process's own Node where
 * the user can reach it (a checkout under a private directory is out of its reach).
 */
export function systemNode(): string {
  if (node) return node;
  const u = hostUser();
  const runs = (file: string) => {
    const r = spawnSync(file, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8', uid: u.uid, gid: u.gid, cwd: '/' });
    return r.status === 0 && Number(r.stdout.trim()) >= 20;
  };
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node', process.execPath]) {
    if (existsSync(candidate) && runs(candidate)) return (node = candidate);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-oc-node-'));
  chmodSync(dir, 0o755);
  copyFileSync(process.execPath, path.join(dir, 'node'));
  chmodSync(path.join(dir, 'node'), 0o755);
  return (node = path.join(dir, 'node'));
}

function asUser(u: TestUser, home: string, extra: NodeJS.ProcessEnv = {}) {
  return {
    uid: u.uid,
    gid: u.gid,
    cwd: home,
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: home, USER: u.name, LOGNAME: u.name, SHELL: '/bin/bash', LANG: 'C.UTF-8', ...extra },
  };
}

/** A home directory of the user's own, readable by nobody else. */
export function freshHome(u: TestUser = hostUser()): string {
  const home = mkdtempSync(path.join(os.tmpdir(), 'hangar-oc-home-'));
  chownSync(home, u.uid, u.gid);
  chmodSync(home, 0o700);
  return home;
}

/** Runs install.sh as the user (`--no-start`): the agent lands in ~/.hangar-agent, checked against its sha256. */
export function installAgent(origin: string, home: string, hostKey: string, u: TestUser = hostUser()): string {
  // Fetched with curl when the machine has it, else with Node (as install.sh fetches the agent).
  const fetchScript = existsSync('/usr/bin/curl') ? `curl -fsS "${origin}/opencomputers/install.sh"` : `"${systemNode()}" -e 'fetch(process.argv[1]).then(r=>r.text()).then(t=>process.stdout.write(t))' "${origin}/opencomputers/install.sh"`;
  const r = spawnSync('sh', ['-c', `${fetchScript} | sh -s -- --no-start --key "$KEY"`], {
    ...asUser(u, home, { KEY: hostKey, PATH: `${path.dirname(systemNode())}:/usr/local/bin:/usr/bin:/bin` }),
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`install.sh failed (${r.status}): ${r.stderr}`);
  return path.join(home, '.hangar-agent', 'hangar-agent.mjs');
}

export interface HostModeAgent {
  home: string;
  user: TestUser;
  process: ChildProcess;
  /** Everything the agent printed. */
  output(): string;
  /** Resolves with the exit code once the agent has exited. */
  exited: Promise<number | null>;
  /** Drops its connection as a network failure would (SIGUSR2); it reconnects by itself. */
  drop(): void;
  /** Stops it; its home goes too unless it was given. */
  stop(): Promise<void>;
}

/** Starts an installed agent as the user; resolves once it said `ready` (or at once with `wait: false`). */
export async function runHostModeAgent(opts: {
  origin: string;
  hostKey: string;
  agentFile: string;
  home: string;
  args?: string[];
  removeHome?: boolean;
  wait?: boolean;
}): Promise<HostModeAgent> {
  const u = hostUser();
  const child = spawn(systemNode(), [opts.agentFile, '--api', opts.origin, ...(opts.args ?? [])], {
    ...asUser(u, opts.home, { HANGAR_HOST_KEY: opts.hostKey }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let seen = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
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
  if (opts.wait === false) ready.catch(() => undefined);
  else await ready;
  return {
    home: opts.home,
    user: u,
    process: child,
    output: () => seen,
    exited,
    drop: () => child.kill('SIGUSR2'),
    stop: async () => {
      await stopChild(child);
      if (opts.removeHome) rmSync(opts.home, { recursive: true, force: true });
    },
  };
}

/**
 * The one command a customer runs, as the user: `curl … install.sh | sh -s -- --key …`,
 * which downloads the agent and starts it. Runs in a process group of its own, so
 * `stop` ends the pipeline and the agent it became.
 */
export function runInstaller(origin: string, home: string, hostKey: string): { process: ChildProcess; output(): string; stop(): Promise<void> } {
  const u = hostUser();
  const child = spawn('sh', ['-c', `curl -fsSL "${origin}/opencomputers/install.sh" | sh -s -- --key "$KEY"`], {
    ...asUser(u, home, { KEY: hostKey, PATH: `${path.dirname(systemNode())}:/usr/local/bin:/usr/bin:/bin` }),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let seen = '';
  child.stdout!.on('data', (d: Buffer) => (seen += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (seen += d.toString()));
  return {
    process: child,
    output: () => seen,
    stop: async () => {
      const exited = new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        /* already gone */
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
    },
  };
}
