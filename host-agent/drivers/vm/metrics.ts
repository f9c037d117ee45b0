/**
 * CPU and memory of a VM computer. From inside the guest first (its control
 * loop reads /proc/stat and /proc/meminfo): CPU% is busy time over all time
 * across its vCPUs since the previous sample (100% = every vCPU busy), memory
 * is what the guest uses (total minus available) against the VM's memory.
 * When the guest cannot answer, the QEMU process stands in: its CPU time per
 * vCPU and its resident memory (which includes emulation overhead).
 * Disk use also comes from inside (df on the computer's disk), as a sandbox's
 * does from its mounted disk; the image file on the host cannot tell it, since
 * zeros written inside become holes there. Without an answer it is left out.
 */
import fs from 'node:fs';
import type { ComputerMetrics } from '../driver.ts';
import type { VmSession } from './session.ts';

const STALE_MS = 60_000;
const SHORT_SAMPLE_MS = 250;
const CONTROL_TIMEOUT_MS = 3000;
/**
 * The control loop answers one request at a time, and `disk` is its only one
 * that starts a process. A guest too slow to answer within a sample (a busy
 * one, or an emulated one while it boots) would otherwise be sent a new df at
 * every sample while the old ones wait, and its freeze or power-off would
 * queue behind all of them. So a VM has at most one disk request out, given
 * this long to answer; a sample taken meanwhile waits the usual time for that
 * same answer and leaves disk use out without it.
 */
const DISK_ANSWER_MS = 30_000;

type DiskUse = Pick<ComputerMetrics, 'disk_bytes' | 'disk_percent'>;

interface GuestSample {
  at: number;
  busy: number;
  total: number;
  memTotalKb: number;
  memAvailableKb: number;
}

interface ProcessSample {
  at: number;
  cpuTicks: number;
  rssBytes: number;
}

export class VmMeter {
  private readonly guest = new Map<string, GuestSample>();
  private readonly host = new Map<string, ProcessSample>();
  /** The sample being taken of each VM: callers who ask meanwhile share it (one set of requests in flight). */
  private readonly measuring = new Map<string, Promise<ComputerMetrics>>();
  /** Each VM's disk request still waiting for the guest's answer. */
  private readonly diskAsked = new Map<string, Promise<DiskUse | null>>();

  measure(session: VmSession): Promise<ComputerMetrics> {
    const running = this.measuring.get(session.id);
    if (running) return running;
    const sample = this.sample(session).finally(() => this.measuring.delete(session.id));
    this.measuring.set(session.id, sample);
    return sample;
  }

  private async sample(session: VmSession): Promise<ComputerMetrics> {
    const memoryLimit = session.state.memory_mb * 1024 * 1024;
    // Both ask the control loop: at once, so a loop that does not answer costs one timeout, not two.
    const [inside, disk] = await Promise.all([this.fromGuest(session).catch(() => null), this.diskOf(session)]);
    if (inside) {
      const used = Math.max(0, inside.memTotalKb - inside.memAvailableKb) * 1024;
      return { cpu_percent: inside.cpu, memory_bytes: used, memory_percent: round1((used / memoryLimit) * 100), ...disk };
    }
    const outside = await this.fromProcess(session);
    return { cpu_percent: outside.cpu, memory_bytes: outside.rssBytes, memory_percent: round1((outside.rssBytes / memoryLimit) * 100), ...disk };
  }

  forget(id: string): void {
    this.guest.delete(id);
    this.host.delete(id);
    this.diskAsked.delete(id);
  }

  /** Disk use if the guest answers within a sample's time; the request stays the VM's only one until answered. */
  private async diskOf(session: VmSession): Promise<DiskUse | Record<string, never>> {
    let asked = this.diskAsked.get(session.id);
    if (!asked) {
      const request: Promise<DiskUse | null> = diskUse(session, DISK_ANSWER_MS)
        .catch(() => null)
        .finally(() => {
          if (this.diskAsked.get(session.id) === request) this.diskAsked.delete(session.id);
        });
      this.diskAsked.set(session.id, request);
      asked = request;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), CONTROL_TIMEOUT_MS);
    });
    try {
      return (await Promise.race([asked, late])) ?? {};
    } finally {
      clearTimeout(timer);
    }
  }

  private async fromGuest(session: VmSession): Promise<GuestSample & { cpu: number }> {
    let prev = this.guest.get(session.id);
    if (!prev || Date.now() - prev.at > STALE_MS) {
      prev = await guestSample(session);
      await new Promise((r) => setTimeout(r, SHORT_SAMPLE_MS));
    }
    const now = await guestSample(session);
    this.guest.set(session.id, now);
    const total = now.total - prev.total;
    return { ...now, cpu: total > 0 ? round1(Math.max(0, ((now.busy - prev.busy) / total) * 100)) : 0 };
  }

  private async fromProcess(session: VmSession): Promise<ProcessSample & { cpu: number }> {
    let prev = this.host.get(session.id);
    if (!prev || Date.now() - prev.at > STALE_MS) {
      prev = processSample(session.state.pid);
      await new Promise((r) => setTimeout(r, SHORT_SAMPLE_MS));
    }
    const now = processSample(session.state.pid);
    this.host.set(session.id, now);
    const seconds = Math.max(0.001, (now.at - prev.at) / 1000);
    const cpu = ((now.cpuTicks - prev.cpuTicks) / CLOCK_TICKS / seconds / Math.max(1, session.state.vcpus)) * 100;
    return { ...now, cpu: round1(Math.max(0, cpu)) };
  }
}

async function guestSample(session: VmSession): Promise<GuestSample> {
  // "cpu" user nice system idle iowait irq softirq steal "mem" total available
  const w = await session.control.request('stat', CONTROL_TIMEOUT_MS);
  const n = w.map(Number);
  if (w[0] !== 'cpu' || w[9] !== 'mem' || n.slice(1, 9).some((x) => !Number.isFinite(x))) throw new Error('malformed stat answer');
  const [user, nice, system, idle, iowait, irq, softirq, steal] = n.slice(1, 9);
  const busy = user + nice + system + irq + softirq + steal;
  return { at: Date.now(), busy, total: busy + idle + iowait, memTotalKb: n[10], memAvailableKb: n[11] };
}

async function diskUse(session: VmSession, timeoutMs: number): Promise<DiskUse> {
  // size used, in KiB, as df counts them on the computer's disk
  const [size, used] = (await session.control.request('disk', timeoutMs)).map(Number);
  // Root inside the VM could take the control port over: only a plausible answer counts.
  if (!Number.isFinite(size) || !(size > 0) || !(used >= 0) || used > size) throw new Error('malformed disk answer');
  return { disk_bytes: used * 1024, disk_percent: round1((used / size) * 100) };
}

/** Linux reports process CPU time in USER_HZ ticks, 100 per second on every common architecture. */
const CLOCK_TICKS = 100;

/** QEMU's CPU ticks and resident memory, from /proc. */
export function processSample(pid: number): ProcessSample {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    return { at: Date.now(), cpuTicks: Number(fields[11]) + Number(fields[12]), rssBytes: rssKb * 1024 };
  } catch {
    return { at: Date.now(), cpuTicks: 0, rssBytes: 0 };
  }
}

const round1 = (x: number) => Math.round(x * 10) / 10;
