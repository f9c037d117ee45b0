/**
 * CPU, memory and disk samples the agent reports, kept in the object's own SQLite
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
    sql.exec('CREATE TABLE IF NOT EXISTS metrics (ts INTEGER PRIMARY KEY, cpu REAL NOT NULL, mem REAL NOT NULL, disk REAL)');
    // Objects made before disk samples have the table without the column.
    const columns = sql.exec<{ name: string }>('PRAGMA table_info(metrics)').toArray();
    if (!columns.some((c) => c.name === 'disk')) sql.exec('ALTER TABLE metrics ADD COLUMN disk REAL');
  }

  /** `disk` is null from agents that do not report disk use. */
  add(ts: number, cpu: number, mem: number, disk: number | null = null): void {
    this.sql.exec('INSERT OR REPLACE INTO metrics (ts, cpu, mem, disk) VALUES (?, ?, ?, ?)', ts, cpu, mem, disk);
    this.sql.exec('DELETE FROM metrics WHERE ts < ?', ts - RETAIN_MS);
  }

  read(window: MetricsWindow, now = Date.now()): { cpu_percent: Point[]; memory_percent: Point[]; disk_percent: Point[] } {
    const { span, bucket } = WINDOWS[window];
    const rows = this.sql
      .exec<{ b: number; cpu: number; mem: number; disk: number | null }>(
        // JS numbers bind as REAL, and INTEGER / REAL does not truncate: cast so the division floors to a bucket.
        'SELECT (ts / CAST(? AS INTEGER)) * ? AS b, AVG(cpu) AS cpu, AVG(mem) AS mem, AVG(disk) AS disk FROM metrics WHERE ts >= ? GROUP BY b ORDER BY b',
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
      disk_percent: rows.filter((r) => r.disk !== null).map((r) => ({ ts: iso(r.b), value: round(r.disk!) })),
    };
  }
}
