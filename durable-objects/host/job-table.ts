/**
 * Jobs of a tenant host as rows of the HostObject's SQLite. A job outlives
 * the process row and log it ran with (those go an hour after it ends): the
 * record keeps its status, exit and the first JOB_MAX_RECORD_BYTES characters
 * of each stream. While it runs, recorded output is appended in pieces
 * (job_output) so a chatty job never rewrites a large value; at the end the
 * pieces are joined into the row.
 */
export const JOB_STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Why a job failed (or was cancelled), beyond its exit code. */
export type JobReason = 'exit_code' | 'signal' | 'timeout' | 'start_failed' | 'agent_unreachable' | 'host_lost' | 'host_revoked' | 'cancelled';

/** Ended jobs kept per host; older ones are dropped first. */
export const JOBS_KEPT = 1000;

export interface JobRow {
  id: string;
  proc_id: string;
  org_id: string;
  command: string;
  args: string[] | null;
  cwd: string | null;
  timeout_s: number;
  status: JobStatus;
  exit_code: number | null;
  signal: number | null;
  reason: JobReason | null;
  error: string | null;
  cancel_requested: boolean;
  stdout: string;
  stderr: string;
  truncated: boolean;
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  updated_at: number;
}

type RawJob = Omit<JobRow, 'args' | 'cancel_requested' | 'truncated'> & { args: string | null; cancel_requested: number; truncated: number; n: number };

const parse = (r: RawJob): JobRow => ({
  id: r.id,
  proc_id: r.proc_id,
  org_id: r.org_id,
  command: r.command,
  args: r.args === null ? null : (JSON.parse(r.args) as string[]),
  cwd: r.cwd,
  timeout_s: r.timeout_s,
  status: r.status,
  exit_code: r.exit_code,
  signal: r.signal,
  reason: r.reason,
  error: r.error,
  cancel_requested: r.cancel_requested === 1,
  stdout: r.stdout,
  stderr: r.stderr,
  truncated: r.truncated === 1,
  created_at: r.created_at,
  started_at: r.started_at,
  completed_at: r.completed_at,
  updated_at: r.updated_at,
});

export type OutputStreamName = 'stdout' | 'stderr';

export class JobTable {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(`CREATE TABLE IF NOT EXISTS jobs (
      n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, proc_id TEXT NOT NULL, org_id TEXT NOT NULL,
      command TEXT NOT NULL, args TEXT, cwd TEXT, timeout_s INTEGER NOT NULL, status TEXT NOT NULL,
      exit_code INTEGER, signal INTEGER, reason TEXT, error TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,
      stdout TEXT NOT NULL DEFAULT '', stderr TEXT NOT NULL DEFAULT '', truncated INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL, started_at INTEGER, completed_at INTEGER, updated_at INTEGER NOT NULL)`);
    sql.exec('CREATE TABLE IF NOT EXISTS job_output (job_id TEXT NOT NULL, piece INTEGER NOT NULL, stream TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (job_id, piece))');
  }

  insert(job: Pick<JobRow, 'id' | 'proc_id' | 'org_id' | 'command' | 'args' | 'cwd' | 'timeout_s' | 'status' | 'created_at'>): void {
    this.sql.exec(
      'INSERT INTO jobs (id, proc_id, org_id, command, args, cwd, timeout_s, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      job.id, job.proc_id, job.org_id, job.command, job.args === null ? null : JSON.stringify(job.args), job.cwd, job.timeout_s, job.status,
      job.created_at, job.created_at,
    );
    this.trim();
  }

  /** A job with its recorded output so far. */
  get(id: string): JobRow | null {
    const r = this.sql.exec<RawJob>('SELECT * FROM jobs WHERE id = ?', id).toArray()[0];
    if (!r) return null;
    const job = parse(r);
    for (const p of this.sql.exec<{ stream: OutputStreamName; text: string }>('SELECT stream, text FROM job_output WHERE job_id = ? ORDER BY piece', id)) {
      job[p.stream] += p.text;
    }
    return job;
  }

  /** Newest first. */
  page(limit: number, offset: number): { jobs: JobRow[]; total: number } {
    const total = this.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM jobs').one().n;
    const ids = this.sql.exec<{ id: string }>('SELECT id FROM jobs ORDER BY n DESC LIMIT ? OFFSET ?', limit, offset).toArray();
    return { jobs: ids.map((r) => this.get(r.id)!), total };
  }

  running(): JobRow[] {
    return this.sql.exec<RawJob>(`SELECT * FROM jobs WHERE status IN ('queued', 'running')`).toArray().map(parse);
  }

  /** Recorded output pieces, appended in order. */
  appendOutput(id: string, pieces: { stream: OutputStreamName; text: string }[]): void {
    let next = this.sql.exec<{ p: number | null }>('SELECT MAX(piece) AS p FROM job_output WHERE job_id = ?', id).one().p ?? 0;
    for (const p of pieces) this.sql.exec('INSERT INTO job_output (job_id, piece, stream, text) VALUES (?, ?, ?, ?)', id, ++next, p.stream, p.text);
  }

  /** Changes a job (only while its status is `onlyIf`, when given). */
  update(
    id: string,
    patch: Partial<Pick<JobRow, 'status' | 'exit_code' | 'signal' | 'reason' | 'error' | 'started_at' | 'completed_at' | 'truncated' | 'cancel_requested'>>,
    onlyIf?: JobStatus,
  ): void {
    const sets: string[] = [];
    const args: unknown[] = [];
    for (const [k, v] of Object.entries(patch)) {
      sets.push(`${k} = ?`);
      args.push(typeof v === 'boolean' ? Number(v) : v);
    }
    sets.push('updated_at = ?');
    args.push(Date.now());
    const guard = onlyIf ? ' AND status = ?' : '';
    this.sql.exec(`UPDATE jobs SET ${sets.join(', ')} WHERE id = ?${guard}`, ...args, id, ...(onlyIf ? [onlyIf] : []));
  }

  /** The job ended: its output pieces become the row's. */
  seal(id: string): void {
    const job = this.get(id);
    if (!job) return;
    this.sql.exec('UPDATE jobs SET stdout = ?, stderr = ? WHERE id = ?', job.stdout, job.stderr, id);
    this.sql.exec('DELETE FROM job_output WHERE job_id = ?', id);
  }

  /** Keeps the newest JOBS_KEPT jobs (running ones always). */
  private trim(): void {
    const old = this.sql
      .exec<{ id: string }>(`SELECT id FROM jobs WHERE status NOT IN ('queued', 'running') AND n <= (SELECT MAX(n) FROM jobs) - ?`, JOBS_KEPT)
      .toArray();
    for (const { id } of old) {
      this.sql.exec('DELETE FROM jobs WHERE id = ?', id);
      this.sql.exec('DELETE FROM job_output WHERE job_id = ?', id);
    }
  }
}
