/**
 * Starting a computer's sandbox as a detached process that outlives the host
 * agent (own session, output to console.log, pid in state.json), and finding
 * it again: a pid alone could have been reused, so its start time is kept too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DriverError } from '../driver.ts';
import type { ComputerCgroup } from './cgroups.ts';
import { attachNetwork } from './network.ts';
import type { ComputerPaths } from './paths.ts';

const INIT_SCRIPT = fileURLToPath(new URL('./sandbox-init.sh', import.meta.url));
/** The guest agent's code: a directory run as `python3 -I <dir>` (its __main__.py starts the hangar_guest package). */
export const GUEST_DIR = fileURLToPath(new URL('../../guest', import.meta.url));

export interface SandboxState {
  /** Host pid of the launcher (unshare), parent of the computer's pid 1. */
  pid: number;
  /** Its start time in clock ticks since boot (/proc/<pid>/stat field 22). */
  start_time: string;
  pasta_pid: number | null;
  booted_at: string;
  /** Random per boot; the guest must present it in its hello (see guest/hangar_guest/common.py BOOT_ID). */
  boot_id: string;
}

export interface BootConfig {
  paths: ComputerPaths;
  templateDir: string;
  hostname: string;
  shares: string[];
  cgroup: ComputerCgroup;
  resolvConf: string;
  dnsForward: boolean;
}

/** Boots the sandbox and its network; resolves once both exist (the guest may still be starting). */
export async function launchSandbox(cfg: BootConfig): Promise<{ state: SandboxState; child: ChildProcess }> {
  const { paths } = cfg;
  prepareRunDir(paths.run, cfg);
  for (const dir of [paths.mnt, paths.upper, paths.work]) fs.mkdirSync(dir, { recursive: true });
  fs.appendFileSync(paths.log, `--- boot ${new Date().toISOString()}\n`);
  const bootId = randomBytes(16).toString('hex');
  const log = fs.openSync(paths.log, 'a');
  let child: ChildProcess;
  try {
    child = spawn('/bin/sh', [INIT_SCRIPT, 'outer'], {
      detached: true, // its own session: neither our exit nor a signal to our group reaches it
      stdio: ['ignore', log, log],
      env: {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        H_CGROUP_PROCS: cfg.cgroup.procsFiles().join(' '),
        H_LOWER: cfg.templateDir,
        H_UPPER: paths.upper,
        H_WORK: paths.work,
        H_MNT: paths.mnt,
        H_RUN: paths.run,
        H_GUEST: GUEST_DIR,
        H_HOSTNAME: cfg.hostname,
        H_SHARES: cfg.shares.join('\n'),
        H_BOOT_ID: bootId,
      },
    });
  } finally {
    fs.closeSync(log);
  }
  // A launcher that cannot be spawned (no memory, no processes left) is reported below, not an uncaught 'error'.
  child.on('error', () => undefined);
  child.unref();
  const pid = child.pid;
  if (!pid) throw new DriverError('FAILED', 'could not start the sandbox launcher');
  const startTime = processStartTime(pid);
  if (!startTime) throw new DriverError('FAILED', `the sandbox exited at once; see ${paths.log}`);
  const state: SandboxState = { pid, start_time: startTime, pasta_pid: null, booted_at: new Date().toISOString(), boot_id: bootId };
  writeState(paths, state);
  try {
    state.pasta_pid = await attachNetwork(pid, paths, cfg.dnsForward);
    // Its network relay belongs to the computer too: stop and metrics then cover it.
    for (const file of cfg.cgroup.procsFiles()) fs.writeFileSync(file, String(state.pasta_pid));
    writeState(paths, state);
  } catch (err) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
    throw err;
  }
  return { state, child };
}

/** A fresh run dir each boot: nothing a previous run left there (it is writable by root inside) survives. */
function prepareRunDir(run: string, cfg: BootConfig): void {
  fs.rmSync(run, { recursive: true, force: true });
  fs.mkdirSync(path.join(run, 'boot'), { recursive: true, mode: 0o700 });
  fs.chmodSync(run, 0o700);
  const boot = path.join(run, 'boot');
  fs.writeFileSync(path.join(boot, 'hostname'), `${cfg.hostname}\n`);
  fs.writeFileSync(
    path.join(boot, 'hosts'),
    `127.0.0.1\tlocalhost\n127.0.1.1\t${cfg.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
  );
  fs.writeFileSync(path.join(boot, 'resolv.conf'), cfg.resolvConf);
}

export function readState(paths: ComputerPaths): SandboxState | null {
  try {
    return JSON.parse(fs.readFileSync(paths.state, 'utf8')) as SandboxState;
  } catch {
    return null;
  }
}

export function writeState(paths: ComputerPaths, state: SandboxState): void {
  const tmp = `${paths.state}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state) + '\n');
  fs.renameSync(tmp, paths.state);
}

export function clearState(paths: ComputerPaths): void {
  fs.rmSync(paths.state, { force: true });
}

/** Start time of a process (field 22 of /proc/<pid>/stat), null if it does not exist or is a zombie. */
export function processStartTime(pid: number): string | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: split after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return null;
  return fields[19] ?? null;
}

/** Whether the sandbox recorded in `state` is still the process with that pid. */
export function isAlive(state: SandboxState | null): boolean {
  return !!state && processStartTime(state.pid) === state.start_time;
}
