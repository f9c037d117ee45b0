/**
 * CPU and memory samples the agent reports, kept in the object's own SQLite
 * for 7 days and read back per window: per minute for 1h, 5-minute averages
 * for 24h, hourly averages for 7d.
 */
export const WINDOWS = { '1h': { span: 3_600_000, bucket: 60_000 }, '24h': { span: 86_400_000, bucket: 300_000 }, '7d': { span: 604_800_000, bucket: 3_600_000 } } as const;
export type MetricsWindow = keyof typeof WINDOWS;

const RETAIN_MS = WINDOWS['7d'].span;

export interface Point {
  ts: string;
  value: number;
}

export class MetricsStore {
  constructor(private readonly sql: SqlStorage) {
    sql.exec('CREATE TABLE IF NOT EXISTS metrics (ts INTEGER PRIMARY KEY, cpu REAL NOT NULL, mem REAL NOT NULL)');
  }

  add(ts: number, cpu: number, mem: number): void {
    this.sql.exec('INSERT OR REPLACE INTO metrics (ts, cpu, mem) VALUES (?, ?, ?)', ts, cpu, mem);
    this.sql.exec('DELETE FROM metrics WHERE ts < ?', ts - RETAIN_MS);
  }

  read(window: MetricsWindow, now = Date.now()): { cpu_percent: Point[]; memory_percent: Point[] } {
    const { span, bucket } = WINDOWS[window];
    const rows = this.sql
      .exec<{ b: number; cpu: number; mem: number }>(
        // JS numbers bind as REAL, and INTEGER / REAL does not truncate: cast so the division floors to a bucket.
        'SELECT (ts / CAST(? AS INTEGER)) * ? AS b, AVG(cpu) AS cpu, AVG(mem) AS mem FROM metrics WHERE ts >= ? GROUP BY b ORDER BY b',
        bucket,
        bucket,
        now - span,
      )
      .toArray();
    const iso = (t: number) => new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const round = (v: number) => Math.round(v * 10) / 10;
    return {
      cpu_percent: rows.map((r) => ({ ts: iso(r.b), value: round(r.cpu) })),
      memory_percent: rows.map((r) => ({ ts: iso(r.b), value: round(r.mem) })),
    };
  }
}
