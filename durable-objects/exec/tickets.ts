/**
 * Tickets for the SSE stream of a command: EventSource cannot send headers, so
 * the ticket in the URL is the only credential. Unguessable (24 random bytes),
 * stored only as a hash, bound to one command of one computer, and good for a
 * first connection within TICKET_TTL_S; once used it stays good for
 * reconnects (Last-Event-ID) as long as the command's log is kept.
 */
import { randomToken, sha256Hex } from '../../worker/http/ids.ts';

export const TICKET_TTL_S = 60;

export class Tickets {
  constructor(private readonly sql: SqlStorage) {
    sql.exec('CREATE TABLE IF NOT EXISTS tickets (hash TEXT PRIMARY KEY, proc_id TEXT NOT NULL, expires_at INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0)');
  }

  async issue(procId: string): Promise<{ ticket: string; expires_at: number }> {
    const ticket = `tkt_${randomToken(24)}`;
    const expires_at = Math.floor(Date.now() / 1000) + TICKET_TTL_S;
    this.sql.exec('INSERT INTO tickets (hash, proc_id, expires_at) VALUES (?, ?, ?)', await sha256Hex(ticket), procId, expires_at);
    return { ticket, expires_at };
  }

  /** The command a ticket opens, or null when it is unknown or expired unused. */
  async redeem(ticket: string): Promise<string | null> {
    const hash = await sha256Hex(ticket);
    const row = this.sql.exec<{ proc_id: string; expires_at: number; used: number }>('SELECT proc_id, expires_at, used FROM tickets WHERE hash = ?', hash).toArray()[0];
    if (!row) return null;
    if (!row.used) {
      if (Date.now() / 1000 > row.expires_at) return null;
      this.sql.exec('UPDATE tickets SET used = 1 WHERE hash = ?', hash);
    }
    return row.proc_id;
  }

  dropFor(procId: string): void {
    this.sql.exec('DELETE FROM tickets WHERE proc_id = ?', procId);
  }
}
