/**
 * Size limits and accounting of computers as cgroups, on cgroup v1 (one
 * hierarchy per controller, as on this build machine) or v2 (the unified
 * hierarchy of current distributions), detected at runtime from mountinfo.
 * Each computer gets `hangar/<id>` in every hierarchy used; the whole sandbox
 * (its launcher, every process inside, its pasta) lives there.
 *
 * Devices: on v1, when the devices controller is mounted, a computer's
 * processes may open only the harmless devices (DEVICES_ALLOWED) whatever
 * nodes they find. Only the computer's own processes join that hierarchy: the
 * launcher needs loop devices for the disk and pasta /dev/net/tun. On v2 the
 * same rule needs a BPF program, which we do not load: there, as on v1, no
 * node can be made inside (mknod needs host root, which a user namespace never
 * has), every file system inside is mounted nodev, and /dev holds only binds
 * of the allowed nodes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from '../driver.ts';

export interface Limits {
  vcpus: number;
  memoryMb: number;
  pids: number;
}

export interface CgroupSample {
  /** Total CPU time used, nanoseconds. */
  cpuNs: number;
  /** Memory in use minus reclaimable page cache (the "working set"). */
  memoryBytes: number;
  memoryLimitBytes: number;
  oomKills: number;
}

const CPU_PERIOD_US = 100_000;
const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids'] as const;
type V1Controller = (typeof V1_CONTROLLERS)[number];

/** null, zero, full, random, urandom, tty, ptmx, and the terminals of devpts. */
export const DEVICES_ALLOWED = ['c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:2 rwm', 'c 136:* rwm'];

export type CgroupLayout =
  | { version: 1; mounts: Record<V1Controller, string>; devices?: string }
  | { version: 2; mount: string };

/** Finds the cgroup hierarchies of this host (v1 when its memory controller is mounted, else v2). */
export function detectCgroups(mountinfo = '/proc/self/mountinfo'): CgroupLayout {
  const v1: Partial<Record<V1Controller, string>> = {};
  let devices: string | undefined;
  const v2: string[] = [];
  for (const line of fs.readFileSync(mountinfo, 'utf8').split('\n')) {
    // "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const mountPoint = left.split(' ')[4].replace(/\\040/g, ' ');
    const [fstype, , superOpts = ''] = right.split(' ');
    if (fstype === 'cgroup') {
      const opts = superOpts.split(',');
      for (const c of V1_CONTROLLERS) if (opts.includes(c)) v1[c] = mountPoint;
      if (opts.includes('devices')) devices = mountPoint;
    } else if (fstype === 'cgroup2') v2.push(mountPoint);
  }
  if (V1_CONTROLLERS.every((c) => v1[c])) return { version: 1, mounts: v1 as Record<V1Controller, string>, devices };
  for (const mount of v2) {
    const controllers = readOr(path.join(mount, 'cgroup.controllers'), '').split(/\s+/);
    if (['memory', 'cpu', 'pids'].every((c) => controllers.includes(c))) return { version: 2, mount };
  }
  throw new DriverError('FAILED', 'no usable cgroup hierarchy with memory, cpu and pids controllers; mount cgroup v2 or the v1 controllers');
}

/** The cgroup(s) of one computer. */
export class ComputerCgroup {
  readonly layout: CgroupLayout;
  readonly id: string;

  constructor(layout: CgroupLayout, id: string) {
    this.layout = layout;
    this.id = id;
  }

  /** Directories of this computer's cgroup, one per hierarchy. */
  dirs(): string[] {
    return [...this.limitDirs(), ...(this.devicesDir() ? [this.devicesDir()!] : [])];
  }

  /** The cgroup.procs files a process writes its pid to, to join every hierarchy but devices. */
  procsFiles(): string[] {
    return this.limitDirs().map((d) => path.join(d, 'cgroup.procs'));
  }

  /** The devices hierarchy's cgroup.procs (v1 with a devices controller), for the computer's own processes only. */
  devicesProcsFiles(): string[] {
    const dir = this.devicesDir();
    return dir ? [path.join(dir, 'cgroup.procs')] : [];
  }

  private limitDirs(): string[] {
    if (this.layout.version === 2) return [path.join(this.layout.mount, 'hangar', this.id)];
    return [...new Set(Object.values(this.layout.mounts))].map((m) => path.join(m, 'hangar', this.id));
  }

  private devicesDir(): string | null {
    if (this.layout.version !== 1 || !this.layout.devices) return null;
    // Co-mounted with a limit controller: the launcher, which needs loop devices, must be in that
    // hierarchy, so no device rules can apply (distributions mount it apart).
    if (Object.values(this.layout.mounts).includes(this.layout.devices)) return null;
    return path.join(this.layout.devices, 'hangar', this.id);
  }

  /** Creates the cgroup (idempotent) and applies the limits. */
  create(limits: Limits): void {
    if (this.layout.version === 2) {
      const parent = path.join(this.layout.mount, 'hangar');
      // Controllers must be enabled in every ancestor's subtree_control.
      enableControllers(this.layout.mount);
      fs.mkdirSync(parent, { recursive: true });
      enableControllers(parent);
    }
    for (const dir of this.dirs()) fs.mkdirSync(dir, { recursive: true });
    const devices = this.devicesDir();
    if (devices) {
      write(devices, 'devices.deny', 'a');
      for (const rule of DEVICES_ALLOWED) write(devices, 'devices.allow', rule);
    }
    this.apply(limits);
  }

  exists(): boolean {
    return this.dirs().every((d) => fs.existsSync(d));
  }

  /** Changes the limits of the (possibly running) computer. */
  apply(limits: Limits): void {
    const memory = limits.memoryMb * 1024 * 1024;
    const quota = Math.round(limits.vcpus * CPU_PERIOD_US);
    try {
      if (this.layout.version === 2) {
        const dir = this.dirs()[0];
        write(dir, 'memory.max', String(memory));
        // Without this the kernel swaps instead of enforcing the limit.
        if (fs.existsSync(path.join(dir, 'memory.swap.max'))) write(dir, 'memory.swap.max', '0');
        write(dir, 'cpu.max', `${quota} ${CPU_PERIOD_US}`);
        write(dir, 'pids.max', String(limits.pids));
        return;
      }
      const mem = this.v1('memory');
      const memsw = fs.existsSync(path.join(mem, 'memory.memsw.limit_in_bytes'));
      // The kernel keeps memsw >= memory at every step: when growing, raise memsw
      // first; when shrinking, lower memory first. Equal values mean no swap.
      const current = Number(readOr(path.join(mem, 'memory.limit_in_bytes'), '0'));
      if (memsw && memory > current) write(mem, 'memory.memsw.limit_in_bytes', String(memory));
      write(mem, 'memory.limit_in_bytes', String(memory));
      if (memsw && memory <= current) write(mem, 'memory.memsw.limit_in_bytes', String(memory));
      write(this.v1('cpu'), 'cpu.cfs_period_us', String(CPU_PERIOD_US));
      write(this.v1('cpu'), 'cpu.cfs_quota_us', String(quota));
      write(this.v1('pids'), 'pids.max', String(limits.pids));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'EBUSY' ? ' (the computer uses more memory than the new limit)' : '';
      throw new DriverError('FAILED', `cannot apply cgroup limits: ${e.message}${why}`);
    }
  }

  /** Current limits as the kernel has them. */
  readLimits(): { memoryBytes: number; cpuQuotaUs: number; cpuPeriodUs: number; pids: number } {
    if (this.layout.version === 2) {
      const dir = this.dirs()[0];
      const [q, p] = readOr(path.join(dir, 'cpu.max'), 'max 100000').split(' ');
      return {
        memoryBytes: Number(readOr(path.join(dir, 'memory.max'), '0')),
        cpuQuotaUs: q === 'max' ? -1 : Number(q),
        cpuPeriodUs: Number(p),
        pids: Number(readOr(path.join(dir, 'pids.max'), '0')),
      };
    }
    return {
      memoryBytes: Number(readOr(path.join(this.v1('memory'), 'memory.limit_in_bytes'), '0')),
      cpuQuotaUs: Number(readOr(path.join(this.v1('cpu'), 'cpu.cfs_quota_us'), '-1')),
      cpuPeriodUs: Number(readOr(path.join(this.v1('cpu'), 'cpu.cfs_period_us'), '100000')),
      pids: Number(readOr(path.join(this.v1('pids'), 'pids.max'), '0')),
    };
  }

  sample(): CgroupSample {
    if (this.layout.version === 2) {
      const dir = this.dirs()[0];
      const stat = keyValues(readOr(path.join(dir, 'memory.stat'), ''));
      const current = Number(readOr(path.join(dir, 'memory.current'), '0'));
      const max = readOr(path.join(dir, 'memory.max'), 'max');
      return {
        cpuNs: (keyValues(readOr(path.join(dir, 'cpu.stat'), '')).usage_usec ?? 0) * 1000,
        memoryBytes: Math.max(0, current - (stat.inactive_file ?? 0)),
        memoryLimitBytes: max === 'max' ? 0 : Number(max),
        oomKills: keyValues(readOr(path.join(dir, 'memory.events'), '')).oom_kill ?? 0,
      };
    }
    const mem = this.v1('memory');
    const stat = keyValues(readOr(path.join(mem, 'memory.stat'), ''));
    const usage = Number(readOr(path.join(mem, 'memory.usage_in_bytes'), '0'));
    return {
      cpuNs: Number(readOr(path.join(this.v1('cpuacct'), 'cpuacct.usage'), '0')),
      memoryBytes: Math.max(0, usage - (stat.total_inactive_file ?? 0)),
      memoryLimitBytes: Number(readOr(path.join(mem, 'memory.limit_in_bytes'), '0')),
      oomKills: keyValues(readOr(path.join(mem, 'memory.oom_control'), '')).oom_kill ?? 0,
    };
  }

  /** How often a fork in the computer failed on its process limit (pids.events). */
  pidsLimitHits(): number {
    const dir = this.layout.version === 2 ? this.dirs()[0] : this.v1('pids');
    return keyValues(readOr(path.join(dir, 'pids.events'), '')).max ?? 0;
  }

  /** Host pids of every process in the computer. */
  pids(): number[] {
    const file = this.layout.version === 2 ? path.join(this.dirs()[0], 'cgroup.procs') : path.join(this.v1('pids'), 'cgroup.procs');
    return readOr(file, '')
      .split('\n')
      .filter(Boolean)
      .map(Number);
  }

  /** SIGKILLs every process in the cgroup and waits until none is left. */
  async killAll(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const killFile = this.layout.version === 2 ? path.join(this.dirs()[0], 'cgroup.kill') : null;
    for (;;) {
      const pids = this.pids();
      if (pids.length === 0) return;
      if (killFile && fs.existsSync(killFile)) fs.writeFileSync(killFile, '1');
      else {
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
      if (Date.now() > deadline) throw new DriverError('FAILED', `processes ${pids.join(', ')} of computer ${this.id} did not die`);
      await sleep(20);
    }
  }

  /** Removes the (empty) cgroup from every hierarchy. */
  async remove(): Promise<void> {
    for (const dir of this.dirs()) {
      for (let attempt = 0; fs.existsSync(dir); attempt++) {
        try {
          fs.rmdirSync(dir);
        } catch (err) {
          // EBUSY while the last exiting processes are being released.
          if (attempt > 100) throw new DriverError('FAILED', `cannot remove cgroup ${dir}: ${(err as Error).message}`);
          await sleep(20);
        }
      }
    }
  }

  private v1(controller: V1Controller): string {
    if (this.layout.version !== 1) throw new Error('not a v1 layout');
    return path.join(this.layout.mounts[controller], 'hangar', this.id);
  }
}

function enableControllers(dir: string): void {
  const file = path.join(dir, 'cgroup.subtree_control');
  const enabled = readOr(file, '').split(/\s+/);
  for (const c of ['cpu', 'memory', 'pids']) {
    if (!enabled.includes(c)) fs.writeFileSync(file, `+${c}`);
  }
}

function write(dir: string, file: string, value: string): void {
  fs.writeFileSync(path.join(dir, file), value);
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return fallback;
  }
}

function keyValues(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) out[k] = Number(v);
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
