/**
 * The credentials a Durable Object holds connections for (docs/security.md,
 * "Credential lifetime"). Every client connection an object accepts — a
 * WebSocket, an SSE viewer, a relayed stream — records the API key that
 * authorized it (Caller.credential_id), so that revoking the key closes it:
 *
 *   - WebSockets get the hibernation tag of their credential (`tags`), so they
 *     are found again after the object slept;
 *   - other connections register a close callback (`track`) for as long as
 *     they are open;
 *   - `revoke` (the object's `endCredential` RPC) closes both kinds and
 *     remembers the id, so a connection that arrives later with a token
 *     minted before the revocation is refused (`admits`).
 *
 * Revoked ids are kept in the object's SQLite: keys are never un-revoked.
 */

/** Close code of a client socket whose credential was revoked (or whose object was deleted with it). */
export const CLOSE_CREDENTIAL_REVOKED = 4401;
const REVOKED_REASON = 'credential revoked';

/** Answers whether a credential is live right now, from the source of truth (D1), without caches. */
export type LiveCheck = (credentialId: string) => Promise<boolean>;

/** A viewer held for a credential (see `viewer`). */
export interface Viewer {
  signal: AbortSignal;
  untrack: () => void;
}

export class HeldCredentials {
  private readonly revoked = new Set<string>();
  private readonly trackers = new Map<string, Set<() => void>>();

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly live: LiveCheck,
  ) {
    const sql = ctx.storage.sql;
    sql.exec('CREATE TABLE IF NOT EXISTS revoked_credentials (id TEXT PRIMARY KEY, revoked_at INTEGER NOT NULL)');
    for (const r of sql.exec<{ id: string }>('SELECT id FROM revoked_credentials')) this.revoked.add(r.id);
  }

  /** Hibernation tags a WebSocket opened with this credential carries (none for a null credential). */
  tags(credentialId: string | null): string[] {
    return credentialId ? [credentialTag(credentialId)] : [];
  }

  /**
   * Whether a connection may be opened with this credential now: not revoked
   * here, and (asked fresh, not from a cache) still live where keys live, so
   * nothing opened after a revocation survives it. Null credentials (JWTs of
   * the deployment's own issuer without a key) are admitted.
   */
  async admits(credentialId: string | null): Promise<boolean> {
    if (!credentialId) return true;
    if (this.revoked.has(credentialId)) return false;
    if (await this.live(credentialId)) return true;
    this.remember(credentialId);
    return false;
  }

  /** Whether this object has seen the credential revoked (a cheap, synchronous check). */
  isRevoked(credentialId: string | null): boolean {
    return credentialId !== null && this.revoked.has(credentialId);
  }

  /** Registers `close` to run if the credential is revoked; returns the function that unregisters it. */
  track(credentialId: string | null, close: () => void): () => void {
    if (!credentialId) return () => {};
    let set = this.trackers.get(credentialId);
    if (!set) this.trackers.set(credentialId, (set = new Set()));
    set.add(close);
    return () => {
      set.delete(close);
      if (set.size === 0 && this.trackers.get(credentialId) === set) this.trackers.delete(credentialId);
    };
  }

  /**
   * A viewer (an SSE stream) opened with the credential: its signal aborts
   * when the request goes away or the credential is revoked; `untrack` when
   * it ends (the hub's onEnd).
   */
  viewer(gone: AbortSignal | undefined, credentialId: string | null): Viewer {
    const ended = new AbortController();
    gone?.addEventListener('abort', () => ended.abort());
    const untrack = this.track(credentialId, () => ended.abort());
    return { signal: ended.signal, untrack };
  }

  /** Ends everything held for the credential and refuses it from now on. */
  revoke(credentialId: string): number {
    this.remember(credentialId);
    let closed = 0;
    for (const ws of this.ctx.getWebSockets(credentialTag(credentialId))) {
      try {
        ws.close(CLOSE_CREDENTIAL_REVOKED, REVOKED_REASON);
        closed++;
      } catch {
        /* already closed */
      }
    }
    const trackers = this.trackers.get(credentialId);
    this.trackers.delete(credentialId);
    for (const close of trackers ?? []) {
      try {
        close();
        closed++;
      } catch (err) {
        console.error('closing a connection of a revoked credential failed', err);
      }
    }
    return closed;
  }

  private remember(credentialId: string): void {
    if (this.revoked.has(credentialId)) return;
    this.revoked.add(credentialId);
    this.ctx.storage.sql.exec('INSERT OR IGNORE INTO revoked_credentials (id, revoked_at) VALUES (?, ?)', credentialId, Date.now());
  }
}

/** The hibernation tag of WebSockets opened with a credential. */
export const credentialTag = (credentialId: string): string => `cred:${credentialId}`;
