/**
 * Tickets for the SSE stream of a command: EventSource cannot send headers, so
 * the ticket in the URL is the only credential. Unguessable (24 random bytes),
 * stored only as a hash, bound to one command of one computer, and good for a
 * first connection within TICKET_TTL_S; once used it stays good for
 * reconnects (Last-Event-ID) as long as the command's log is kept. Each
 * records the API key it was minted with: revoking that key ends it.
 */
import { randomToken, sha256Hex } from '../../worker/http/ids.ts';

export const TICKET_TTL_S = 60;

export class Tickets {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(
      'CREATE TABLE IF NOT EXISTS tickets (hash TEXT PRIMARY KEY, proc_id TEXT NOT NULL, expires_at INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0, credential_id TEXT)',
    );
    // Objects made before tickets recorded their key.
    const columns = sql.exec<{ name: string }>('PRAGMA table_info(tickets)').toArray();
    if (!columns.some((c) => c.name === 'credential_id')) sql.exec('ALTER TABLE tickets ADD COLUMN credential_id TEXT');
  }

  async issue(procId: string, credentialId: string | null): Promise<{ ticket: string; expires_at: number }> {
    const ticket = `tkt_${randomToken(24)}`;
    const expires_at = Math.floor(Date.now() / 1000) + TICKET_TTL_S;
    this.sql.exec('INSERT INTO tickets (hash, proc_id, expires_at, credential_id) VALUES (?, ?, ?, ?)', await sha256Hex(ticket), procId, expires_at, credentialId);
    return { ticket, expires_at };
  }

  /** The command a ticket opens and the key it was minted with, or null when it is unknown or expired unused. */
  async redeem(ticket: string): Promise<{ proc_id: string; credential_id: string | null } | null> {
    const hash = await sha256Hex(ticket);
    const row = this.sql
      .exec<{ proc_id: string; expires_at: number; used: number; credential_id: string | null }>(
        'SELECT proc_id, expires_at, used, credential_id FROM tickets WHERE hash = ?',
        hash,
      )
      .toArray()[0];
    if (!row) return null;
    if (!row.used) {
      if (Date.now() / 1000 > row.expires_at) return null;
      this.sql.exec('UPDATE tickets SET used = 1 WHERE hash = ?', hash);
    }
    return { proc_id: row.proc_id, credential_id: row.credential_id };
  }

  dropFor(procId: string): void {
    this.sql.exec('DELETE FROM tickets WHERE proc_id = ?', procId);
  }

  /** Forgets every ticket minted with a revoked key. */
  dropForCredential(credentialId: string): void {
    this.sql.exec('DELETE FROM tickets WHERE credential_id = ?', credentialId);
  }
}
