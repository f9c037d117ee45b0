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

/** Resident memory of a process in bytes: all of it, and the anonymous part (heap; not file pages such as SQLite's). */
function rss(pid: number): { all: number; anon: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
    return { all: kb('VmRSS'), anon: kb('RssAnon') };
  } catch {
    return { all: 0, anon: 0 };
  }
}

interface Peak {
  name: string;
  before: number;
  peak: number;
  anonBefore: number;
  anonPeak: number;
}

/** Samples the memory of named processes every 100 ms; `stop` gives each one's resident memory before and at peak. */
export class RssSampler {
  private readonly peaks: Peak[];
  private readonly timer: NodeJS.Timeout;
  private readonly pids: Record<string, number>;

  constructor(pids: Record<string, number>) {
    this.pids = pids;
    this.peaks = Object.entries(pids).map(([name, pid]) => {
      const r = rss(pid);
      return { name, before: r.all, peak: r.all, anonBefore: r.anon, anonPeak: r.anon };
    });
    this.timer = setInterval(() => this.sample(), 100);
  }

  stop(): Peak[] {
    clearInterval(this.timer);
    this.sample();
    return this.peaks;
  }

  private sample(): void {
    for (const p of this.peaks) {
      const r = rss(this.pids[p.name]);
      p.peak = Math.max(p.peak, r.all);
      p.anonPeak = Math.max(p.anonPeak, r.anon);
    }
  }
}

/** Prints a sampler's result, one line per process. */
export function printRss(result: Peak[]): void {
  for (const r of result) {
    console.log(
      `    peak RSS ${r.name.padEnd(24)} ${mib(r.peak).padStart(9)} (+${mib(r.peak - r.before)}), anonymous ${mib(r.anonPeak)} (+${mib(r.anonPeak - r.anonBefore)})`,
    );
  }
}
