/** Percentiles, formatting, and the peak memory of processes sampled while something runs. */
import { readFileSync } from 'node:fs';

export function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

export const ms = (v: number): string => `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`;
export const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(0)} MiB`;

/** One result line: a label, our figure and the baseline beside it. */
export function row(label: string, ours: string, baseline: string): void {
  console.log(`  ${label.padEnd(44)} ${ours.padEnd(34)} baseline: ${baseline}`);
}

/** Resident memory of a process in bytes (0 once it is gone). */
function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Samples VmRSS of named processes every 100 ms; `stop` gives each one's resident memory before and at peak. */
export class RssSampler {
  private readonly before: Record<string, number> = {};
  private readonly peak: Record<string, number> = {};
  private readonly timer: NodeJS.Timeout;
  private readonly pids: Record<string, number>;

  constructor(pids: Record<string, number>) {
    this.pids = pids;
    for (const [name, pid] of Object.entries(pids)) this.before[name] = this.peak[name] = rss(pid);
    this.timer = setInterval(() => this.sample(), 100);
  }

  stop(): { name: string; before: number; peak: number }[] {
    clearInterval(this.timer);
    this.sample();
    return Object.keys(this.pids).map((name) => ({ name, before: this.before[name], peak: this.peak[name] }));
  }

  private sample(): void {
    for (const [name, pid] of Object.entries(this.pids)) this.peak[name] = Math.max(this.peak[name], rss(pid));
  }
}

/** Prints a sampler's result, one line per process. */
export function printRss(result: ReturnType<RssSampler['stop']>): void {
  for (const r of result) console.log(`    peak RSS ${r.name.padEnd(26)} ${mib(r.peak).padStart(9)}  (before ${mib(r.before)}, +${mib(r.peak - r.before)})`);
}
