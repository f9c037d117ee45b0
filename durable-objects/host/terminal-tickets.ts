/**
 * Terminal tickets of a tenant host (spec/05): a browser cannot send headers
 * on a WebSocket, so the ticket in `ws_url` is the credential. It names its
 * host (the Worker routes by it), is stored only as a hash, is bound to the
 * tenant, the terminal session and the API key that asked for it, must be
 * used within TICKET_TTL_MS, and works once.
 */
import { randomToken, sha256Hex } from '../../worker/http/ids.ts';

export const TERMINAL_TICKET_TTL_MS = 30_000;

export interface TicketGrant {
  session_id: string;
  org_id: string;
  /** The API key that minted it (null for a JWT): revoking the key ends the sockets it opened. */
  credential_id: string | null;
}

/** `tk_` + the host id's 32 hex digits + 32 random bytes. */
export function newTicket(hostId: string): string {
  return `tk_${hostId.replaceAll('-', '')}${randomToken(32)}`;
}

/** The host a ticket names, or null when it is not one of ours. */
export function ticketHost(ticket: string): string | null {
  const m = /^tk_([0-9a-f]{32})[A-Za-z0-9_-]{43}$/.exec(ticket);
  if (!m) return null;
  const h = m[1];
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export class TerminalTickets {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(
      'CREATE TABLE IF NOT EXISTS terminal_tickets (hash TEXT PRIMARY KEY, session_id TEXT NOT NULL, org_id TEXT NOT NULL, credential_id TEXT, expires_at INTEGER NOT NULL)',
    );
  }

  async issue(hostId: string, grant: TicketGrant): Promise<{ ticket: string; expires_at: number }> {
    const ticket = newTicket(hostId);
    const expires_at = Date.now() + TERMINAL_TICKET_TTL_MS;
    this.sql.exec('DELETE FROM terminal_tickets WHERE expires_at < ?', Date.now());
    this.sql.exec(
      'INSERT INTO terminal_tickets (hash, session_id, org_id, credential_id, expires_at) VALUES (?, ?, ?, ?, ?)',
      await sha256Hex(ticket), grant.session_id, grant.org_id, grant.credential_id, expires_at,
    );
    return { ticket, expires_at };
  }

  /** What the ticket grants, once: it is gone after this call whether it was good or not. */
  async redeem(ticket: string): Promise<TicketGrant | null> {
    const hash = await sha256Hex(ticket);
    const row = this.sql
      .exec<{ session_id: string; org_id: string; credential_id: string | null; expires_at: number }>('SELECT session_id, org_id, credential_id, expires_at FROM terminal_tickets WHERE hash = ?', hash)
      .toArray()[0];
    if (!row) return null;
    this.sql.exec('DELETE FROM terminal_tickets WHERE hash = ?', hash);
    return Date.now() > row.expires_at ? null : { session_id: row.session_id, org_id: row.org_id, credential_id: row.credential_id };
  }

  /** Forgets every ticket minted with a revoked key. */
  dropForCredential(credentialId: string): void {
    this.sql.exec('DELETE FROM terminal_tickets WHERE credential_id = ?', credentialId);
  }
}
