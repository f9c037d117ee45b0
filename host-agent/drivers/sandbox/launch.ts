/**
 * Starting a computer's sandbox as a detached process that outlives the host
 * agent (own session, output to console.log, pid in state.json), and finding
 * it again: a pid alone could have been reused, so its start time is kept too.
 *
 * The sandbox is made by the launcher (launcher/hangar_launcher, run with the
 * guest runtime's own Python): user namespace and uid range, idmapped disks,
 * the other namespaces, the root, capabilities and seccomp. It reports on fd 3
 * once the namespaces exist; this side then attaches the network.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { GuestRuntime } from '../../guest/runtime.ts';
import { DriverError } from '../driver.ts';
import type { ComputerCgroup } from './cgroups.ts';
import { attachNetwork } from './network.ts';
import type { ComputerPaths } from './paths.ts';
import { readJsonFile, writeJsonFile } from '../json-file.ts';

export interface SandboxState {
  /** Host pid of the launcher, whose death ends the computer. */
  pid: number;
  /** Its start time in clock ticks since boot (/proc/<pid>/stat field 22). */
  start_time: string;
  pasta_pid: number | null;
  booted_at: string;
  /** Random per boot; the guest must present it in its hello (see guest/hangar_guest/common.py BOOT_ID). */
  boot_id: string;
  /** The process owning the computer's namespaces (absent for sandboxes of the old launcher). */
  ns_pid?: number;
  /** First host uid/gid of the computer's range (its root). */
  uid_base?: number;
  /** fd of the launcher open on the disk's file system: /proc/<pid>/fd/<disk_fd> reaches it for fsfreeze. */
  disk_fd?: number;
}

export interface BootConfig {
  paths: ComputerPaths;
  templateDir: string;
  runtime: GuestRuntime;
  dataDir: string;
  hostname: string;
  shares: string[];
  cgroup: ComputerCgroup;
  resolvConf: string;
  dnsForward: boolean;
}

/** What the launcher reports on fd 3: the namespaces as soon as they exist, then the disk. */
const NamespacesReport = z.object({ ns_pid: z.number().int().positive(), uid_base: z.number().int().positive() });
const DiskReport = z.object({ disk_fd: z.number().int().nonnegative() });
const REPORT_TIMEOUT_MS = 20_000;

/** Boots the sandbox and its network; resolves once both exist (the guest may still be starting). */
export async function launchSandbox(cfg: BootConfig): Promise<{ state: SandboxState; child: ChildProcess }> {
  const { paths } = cfg;
  prepareRunDir(paths.run);
  fs.appendFileSync(paths.log, `--- boot ${new Date().toISOString()}\n`, { mode: 0o600 });
  const bootId = randomBytes(16).toString('hex');
  const launch = {
    id: path.basename(paths.dir),
    data_dir: cfg.dataDir,
    cgroup_procs: cfg.cgroup.procsFiles(),
    devices_procs: cfg.cgroup.devicesProcsFiles(),
    template: cfg.templateDir,
    disk_image: paths.image,
    run_dir: paths.run,
    runtime_dir: cfg.runtime.dir,
    shares: cfg.shares,
    hostname: cfg.hostname,
    etc: {
      hostname: `${cfg.hostname}\n`,
      hosts: `127.0.0.1\tlocalhost\n127.0.1.1\t${cfg.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
      'resolv.conf': cfg.resolvConf,
    },
    boot_id: bootId,
    guest_argv: cfg.runtime.guestArgv('/run/hangar/guest.sock'),
  };
  const log = fs.openSync(paths.log, 'a');
  let child: ChildProcess;
  try {
    const [cmd, ...args] = cfg.runtime.launcherArgv();
    child = spawn(cmd, args, {
      detached: true, // its own session: neither our exit nor a signal to our group reaches it
      stdio: ['ignore', log, log, 'pipe'],
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HANGAR_LAUNCH: JSON.stringify(launch) },
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
  const reports = new ReportReader(child.stdio[3] as Readable, paths.log);
  try {
    const ns = await reports.next(NamespacesReport);
    Object.assign(state, ns);
    writeState(paths, state);
    // The network comes up while the launcher builds the root.
    const [pastaPid, disk] = await Promise.all([attachNetwork(ns.ns_pid, ns.uid_base, paths.dir, cfg.dnsForward), reports.next(DiskReport)]);
    state.pasta_pid = pastaPid;
    state.disk_fd = disk.disk_fd;
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
  } finally {
    reports.close();
  }
  return { state, child };
}

/** The launcher's JSON lines, one at a time; a DriverError with the console's last lines if it fails first. */
class ReportReader {
  private readonly stream: Readable;
  private readonly logFile: string;
  private readonly lines: string[] = [];
  private ended: string | null = null;
  private wake: (() => void) | null = null;
  private buffer = '';

  constructor(stream: Readable, logFile: string) {
    this.stream = stream;
    this.logFile = logFile;
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
        this.lines.push(this.buffer.slice(0, nl));
        this.buffer = this.buffer.slice(nl + 1);
      }
      this.wake?.();
    });
    stream.on('error', (e) => this.end(e.message));
    stream.on('end', () => this.end('its launcher exited'));
  }

  async next<T>(schema: z.ZodType<T>): Promise<T> {
    const deadline = Date.now() + REPORT_TIMEOUT_MS;
    while (this.lines.length === 0) {
      if (this.ended) throw this.failed(this.ended);
      if (Date.now() >= deadline) throw this.failed('no word from its launcher');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
    const parsed = schema.safeParse(safeJson(this.lines.shift()!));
    if (!parsed.success) throw this.failed('its launcher said something unexpected');
    return parsed.data;
  }

  close(): void {
    this.stream.removeAllListeners('data');
    this.stream.on('error', () => undefined);
    this.stream.destroy();
  }

  private end(why: string): void {
    this.ended ??= why;
    this.wake?.();
  }

  private failed(why: string): DriverError {
    return new DriverError('FAILED', `the computer did not start (${why}): ${logTail(this.logFile)}`);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export function logTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-5).join(' | ');
  } catch {
    return 'no console log';
  }
}

/**
 * A fresh run dir each boot: nothing a previous run left there (it is writable by root inside)
 * survives. The launcher hands it to the computer's root once it knows its uid range.
 */
function prepareRunDir(run: string): void {
  fs.rmSync(run, { recursive: true, force: true });
  fs.mkdirSync(run, { mode: 0o700 });
}

export function readState(paths: ComputerPaths): SandboxState | null {
  return readJsonFile<SandboxState>(paths.state);
}

export function writeState(paths: ComputerPaths, state: SandboxState): void {
  writeJsonFile(paths.state, state);
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
