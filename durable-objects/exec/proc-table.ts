/** Streamed processes of a computer as rows of the object's SQLite, so an evicted object finds them again. */
import type { OutputStream, ProcExit, StreamOffsets } from '../../schema/protocol.ts';

/** Streamed commands, exec sockets, terminals and sync commands of computers and hosts; jobs of tenant hosts. */
export type ProcKind = 'stream' | 'ws' | 'terminal' | 'sync' | 'job';

export interface ProcRow {
  proc_id: string;
  kind: ProcKind;
  org_id: string;
  status: 'running' | 'ended';
  /** Output bytes taken so far, per stream. */
  offsets: StreamOffsets;
  /** Stdin bytes sent to the agent so far. */
  stdin_sent: number;
  /** Kind-specific state the sink keeps (splitter state, terminal size…). */
  sink_state: Record<string, unknown>;
  exit: ProcExit | null;
  created_at: number;
  ended_at: number | null;
  /** When an ended process's log is dropped. */
  expires_at: number | null;
}

type RawRow = {
  proc_id: string;
  kind: ProcKind;
  org_id: string;
  status: 'running' | 'ended';
  offsets: string;
  stdin_sent: number;
  sink_state: string;
  exit: string | null;
  created_at: number;
  ended_at: number | null;
  expires_at: number | null;
};

const parse = (r: RawRow): ProcRow => ({
  ...r,
  offsets: JSON.parse(r.offsets) as StreamOffsets,
  sink_state: JSON.parse(r.sink_state) as Record<string, unknown>,
  exit: r.exit ? (JSON.parse(r.exit) as ProcExit) : null,
});

export class ProcTable {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(`CREATE TABLE IF NOT EXISTS procs (
      proc_id TEXT PRIMARY KEY, kind TEXT NOT NULL, org_id TEXT NOT NULL, status TEXT NOT NULL,
      offsets TEXT NOT NULL, stdin_sent INTEGER NOT NULL DEFAULT 0, sink_state TEXT NOT NULL, exit TEXT,
      created_at INTEGER NOT NULL, ended_at INTEGER, expires_at INTEGER)`);
  }

  insert(row: ProcRow): void {
    this.sql.exec(
      'INSERT INTO procs (proc_id, kind, org_id, status, offsets, stdin_sent, sink_state, exit, created_at, ended_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      row.proc_id, row.kind, row.org_id, row.status, JSON.stringify(row.offsets), row.stdin_sent, JSON.stringify(row.sink_state),
      row.exit ? JSON.stringify(row.exit) : null, row.created_at, row.ended_at, row.expires_at,
    );
  }

  get(procId: string): ProcRow | null {
    const r = this.sql.exec<RawRow>('SELECT * FROM procs WHERE proc_id = ?', procId).toArray()[0];
    return r ? parse(r) : null;
  }

  running(): ProcRow[] {
    return this.sql.exec<RawRow>(`SELECT * FROM procs WHERE status = 'running' ORDER BY created_at`).toArray().map(parse);
  }

  /** Saves the moving parts of a row. */
  save(row: ProcRow): void {
    this.sql.exec(
      'UPDATE procs SET status = ?, offsets = ?, stdin_sent = ?, sink_state = ?, exit = ?, ended_at = ?, expires_at = ? WHERE proc_id = ?',
      row.status, JSON.stringify(row.offsets), row.stdin_sent, JSON.stringify(row.sink_state), row.exit ? JSON.stringify(row.exit) : null,
      row.ended_at, row.expires_at, row.proc_id,
    );
  }

  /** Ended processes whose logs are due for removal. */
  expired(now: number): string[] {
    return this.sql.exec<{ proc_id: string }>(`SELECT proc_id FROM procs WHERE status = 'ended' AND expires_at <= ?`, now).toArray().map((r) => r.proc_id);
  }

  nextExpiry(): number | null {
    return this.sql.exec<{ t: number | null }>(`SELECT MIN(expires_at) AS t FROM procs WHERE status = 'ended'`).one().t;
  }

  delete(procId: string): void {
    this.sql.exec('DELETE FROM procs WHERE proc_id = ?', procId);
  }
}

export const nextOffset = (row: ProcRow, stream: OutputStream): number => row.offsets[stream] ?? 0;
