/**
 * A tenant host's status, as its HostObject keeps it: pending until an agent
 * first says hello, then online / offline as the agent socket comes and goes,
 * error when the agent reports a fault it cannot serve past (an unsupported
 * protocol, a failed preflight), revoked for good. The object's copy decides;
 * D1 mirrors it for lists, and every change is a host event.
 */
import type { HostStatus } from '../../schema/db.ts';
import type { HostModeHello } from '../../schema/protocol.ts';
import { isoNow } from '../../worker/http/ids.ts';

/** The hello's facts about the machine, as GET host shows them. */
export function helloColumns(h: HostModeHello) {
  return {
    agent_version: h.agent_version,
    os: h.os,
    os_release: h.os_release,
    arch: h.arch,
    hostname: h.hostname,
    cpus: h.cpus,
    memory_mb: h.memory_mb,
    agent_info: JSON.stringify({ user: h.user, node_version: h.node_version, terminal: h.terminal, fs_root: h.fs_root }),
  };
}

export class HostStatusKeeper {
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly db: D1Database,
    /** A change happened: tell the host's event streams. */
    private readonly changed: (status: HostStatus, reason: string | null) => void,
  ) {}

  async current(): Promise<HostStatus> {
    return (await this.storage.get<HostStatus>('status')) ?? 'pending';
  }

  /**
   * Moves to `status` (never out of revoked), mirrors it and the given
   * columns to D1, and publishes the change.
   */
  async set(hostId: string, status: HostStatus, reason: string | null, columns: Record<string, string | number | null> = {}): Promise<void> {
    const was = await this.current();
    if (was === 'revoked') return;
    const now = isoNow();
    const cols = { ...columns, status, status_reason: reason, updated_at: now, ...(status === 'online' && { last_seen_at: now }) };
    const names = Object.keys(cols);
    await this.db
      .prepare(`UPDATE hosts SET ${names.map((n) => `${n} = ?`).join(', ')} WHERE id = ? AND status != 'revoked'`)
      .bind(...Object.values(cols), hostId)
      .run();
    await this.storage.put('status', status);
    if (was !== status) this.changed(status, reason);
  }

  /** The route revoked the host in D1; the object follows and says so. */
  async revoked(): Promise<boolean> {
    if ((await this.current()) === 'revoked') return false;
    await this.storage.put('status', 'revoked');
    this.changed('revoked', null);
    return true;
  }

  /** Keeps last_seen_at roughly current while the agent talks. */
  async seen(hostId: string): Promise<void> {
    await this.db.prepare('UPDATE hosts SET last_seen_at = ? WHERE id = ?').bind(isoNow(), hostId).run();
  }
}
