/**
 * CPU and memory of a computer from its cgroup. CPU% is the cgroup's CPU time
 * over wall time since the previous sample, relative to the computer's vCPUs
 * (100% = every vCPU busy); memory is the working set against the limit.
 */
import type { ComputerMetrics } from '../driver.ts';
import type { ComputerCgroup } from './cgroups.ts';

/** A previous sample older than this says nothing about now: take a short fresh one. */
const STALE_MS = 60_000;
const SHORT_SAMPLE_MS = 250;

export class CpuMeter {
  private readonly last = new Map<string, { at: number; cpuNs: number }>();

  async measure(id: string, cgroup: ComputerCgroup, vcpus: number): Promise<ComputerMetrics> {
    let prev = this.last.get(id);
    if (!prev || Date.now() - prev.at > STALE_MS) {
      prev = { at: Date.now(), cpuNs: cgroup.sample().cpuNs };
      await new Promise((r) => setTimeout(r, SHORT_SAMPLE_MS));
    }
    const now = Date.now();
    const s = cgroup.sample();
    this.last.set(id, { at: now, cpuNs: s.cpuNs });
    const elapsedNs = Math.max(1, now - prev.at) * 1e6;
    const cpu = Math.max(0, ((s.cpuNs - prev.cpuNs) / elapsedNs / Math.max(1, vcpus)) * 100);
    return {
      cpu_percent: Math.round(cpu * 10) / 10,
      memory_bytes: s.memoryBytes,
      memory_percent: s.memoryLimitBytes > 0 ? Math.round((s.memoryBytes / s.memoryLimitBytes) * 1000) / 10 : 0,
    };
  }

  forget(id: string): void {
    this.last.delete(id);
  }
}
