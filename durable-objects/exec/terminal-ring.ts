/**
 * The recent output of a terminal session, kept in the object's SQLite so a
 * socket that re-attaches — even to an object that was evicted meanwhile —
 * gets the screen it left. Output is held in memory until the process
 * manager commits (the moment it is acknowledged to the agent), then written
 * in rows of up to ROW_BYTES; the oldest rows go once the rest still hold
 * TERMINAL_RING_BYTES. A replay is the last TERMINAL_RING_BYTES.
 */
export const TERMINAL_RING_BYTES = 64 * 1024;
const ROW_BYTES = 16 * 1024;

export class OutputRing {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** The newest row while it has room left, so small writes (keystroke echoes) fill rows instead of making many. */
  private tail: { seq: number; bytes: Uint8Array } | null = null;
  private stored: number;
  private nextSeq: number;

  static init(sql: SqlStorage): void {
    sql.exec(`CREATE TABLE IF NOT EXISTS terminal_output (
      proc_id TEXT NOT NULL, seq INTEGER NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY (proc_id, seq))`);
  }

  constructor(
    private readonly sql: SqlStorage,
    readonly procId: string,
  ) {
    const sums = sql
      .exec<{ n: number | null; last: number | null }>('SELECT SUM(LENGTH(bytes)) AS n, MAX(seq) AS last FROM terminal_output WHERE proc_id = ?', procId)
      .one();
    this.stored = sums.n ?? 0;
    this.nextSeq = (sums.last ?? 0) + 1;
    if (sums.last !== null) {
      const row = sql.exec<{ bytes: ArrayBuffer }>('SELECT bytes FROM terminal_output WHERE proc_id = ? AND seq = ?', procId, sums.last).one();
      if (row.bytes.byteLength < ROW_BYTES) this.tail = { seq: sums.last, bytes: new Uint8Array(row.bytes) };
    }
  }

  append(bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return;
    this.pending.push(bytes.slice());
    this.pendingBytes += bytes.byteLength;
    // Between commits no more than a ring's worth is worth holding.
    while (this.pending.length > 1 && this.pendingBytes - this.pending[0].byteLength >= TERMINAL_RING_BYTES) {
      this.pendingBytes -= this.pending.shift()!.byteLength;
    }
  }

  /** Writes held output, then drops rows no longer needed for a full ring. */
  flush(): void {
    if (this.pendingBytes === 0) return;
    let data = concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    if (data.byteLength >= TERMINAL_RING_BYTES) {
      // The new output alone fills the ring: nothing stored before it is needed.
      this.sql.exec('DELETE FROM terminal_output WHERE proc_id = ?', this.procId);
      this.stored = 0;
      this.tail = null;
      data = data.subarray(data.byteLength - TERMINAL_RING_BYTES);
    }
    if (this.tail) {
      const n = Math.min(ROW_BYTES - this.tail.bytes.byteLength, data.byteLength);
      const bytes = concat([this.tail.bytes, data.subarray(0, n)], this.tail.bytes.byteLength + n);
      this.sql.exec('UPDATE terminal_output SET bytes = ? WHERE proc_id = ? AND seq = ?', blob(bytes), this.procId, this.tail.seq);
      this.tail = bytes.byteLength < ROW_BYTES ? { seq: this.tail.seq, bytes } : null;
      this.stored += n;
      data = data.subarray(n);
    }
    while (data.byteLength > 0) {
      const piece = data.slice(0, ROW_BYTES);
      const seq = this.nextSeq++;
      this.sql.exec('INSERT INTO terminal_output (proc_id, seq, bytes) VALUES (?, ?, ?)', this.procId, seq, blob(piece));
      this.tail = piece.byteLength < ROW_BYTES ? { seq, bytes: piece } : null;
      this.stored += piece.byteLength;
      data = data.subarray(piece.byteLength);
    }
    for (;;) {
      const oldest = this.sql
        .exec<{ seq: number; n: number }>('SELECT seq, LENGTH(bytes) AS n FROM terminal_output WHERE proc_id = ? ORDER BY seq LIMIT 1', this.procId)
        .toArray()[0];
      if (!oldest || this.stored - oldest.n < TERMINAL_RING_BYTES) break;
      this.sql.exec('DELETE FROM terminal_output WHERE proc_id = ? AND seq = ?', this.procId, oldest.seq);
      this.stored -= oldest.n;
    }
  }

  /** The last TERMINAL_RING_BYTES of output (stored and held), starting at a UTF-8 character boundary when cut. */
  read(): Uint8Array {
    const rows = this.sql.exec<{ bytes: ArrayBuffer }>('SELECT bytes FROM terminal_output WHERE proc_id = ? ORDER BY seq', this.procId).toArray();
    const parts = [...rows.map((r) => new Uint8Array(r.bytes)), ...this.pending];
    const all = concat(parts, parts.reduce((n, p) => n + p.byteLength, 0));
    if (all.byteLength <= TERMINAL_RING_BYTES) return all;
    let from = all.byteLength - TERMINAL_RING_BYTES;
    // Continuation bytes (10xxxxxx) would show as replacement characters.
    for (let i = 0; i < 3 && (all[from] & 0xc0) === 0x80; i++) from++;
    return all.subarray(from);
  }

  drop(): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.tail = null;
    this.stored = 0;
    this.sql.exec('DELETE FROM terminal_output WHERE proc_id = ?', this.procId);
  }
}

/** SQLite takes blobs as ArrayBuffers: exactly the view's bytes. */
function blob(u: Uint8Array): ArrayBuffer {
  return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength ? (u.buffer as ArrayBuffer) : (u.slice().buffer as ArrayBuffer);
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
