/**
 * A tenant host's tunnels as its object serves them: D1 keeps the records the
 * API lists; the tunnel routes hand every change to the object (tunnelChanged)
 * before they answer, so the next request through a tunnel already sees it,
 * and no tunnel request reads D1. A host whose object has never been told
 * (its tunnels are older than this table, or the object's storage was lost)
 * reads them from D1 once.
 */
import type { TunnelAuthMode, TunnelRow } from '../../schema/tunnels.ts';
import type { Env } from '../../worker/env.ts';
import { hashVersion } from '../../worker/tunnels/tunnel-password.ts';
import type { TunnelAccessRecord } from '../../worker/tunnels/tunnel-auth.ts';

/** A tunnel's record as the routes hand it over (the password only as its hash). */
export interface TunnelRecord {
  id: string;
  slug: string;
  target_port: number;
  auth_mode: TunnelAuthMode;
  enabled: boolean;
  password_hash: string | null;
}

export interface TunnelEntry extends TunnelAccessRecord {
  target_port: number;
  password_hash: string | null;
}

export const tunnelRecordOf = (r: TunnelRow): TunnelRecord => ({
  id: r.id,
  slug: r.slug,
  target_port: r.target_port,
  auth_mode: r.auth_mode,
  enabled: r.enabled === 1,
  password_hash: r.password_hash,
});

const PREFIX = 'tunnel:';
const SYNCED = 'tunnels-synced';

export class TunnelTable {
  private readonly storage: DurableObjectStorage;
  private readonly env: Env;
  private entries: Map<string, TunnelEntry> | null = null;
  private loading: Promise<Map<string, TunnelEntry>> | null = null;

  constructor(storage: DurableObjectStorage, env: Env) {
    this.storage = storage;
    this.env = env;
  }

  async get(hostId: string, tunnelId: string): Promise<TunnelEntry | null> {
    return (await this.all(hostId)).get(tunnelId) ?? null;
  }

  /** Records a change the routes made in D1 (null: the tunnel was deleted). */
  async set(hostId: string, tunnelId: string, rec: TunnelRecord | null): Promise<void> {
    const all = await this.all(hostId);
    if (rec) {
      await this.storage.put(PREFIX + tunnelId, rec);
      all.set(tunnelId, await entryOf(rec));
    } else {
      await this.storage.delete(PREFIX + tunnelId);
      all.delete(tunnelId);
    }
  }

  private all(hostId: string): Promise<Map<string, TunnelEntry>> {
    if (this.entries) return Promise.resolve(this.entries);
    this.loading ??= this.load(hostId).then(
      (m) => (this.entries = m),
      (err: unknown) => {
        this.loading = null; // a failed read (D1 away) is tried again by the next request
        throw err;
      },
    );
    return this.loading;
  }

  private async load(hostId: string): Promise<Map<string, TunnelEntry>> {
    if (!(await this.storage.get(SYNCED))) {
      const { results } = await this.env.DB.prepare('SELECT * FROM tunnels WHERE host_id = ?').bind(hostId).all<TunnelRow>();
      const recs = Object.fromEntries(results.map((r) => [PREFIX + r.id, tunnelRecordOf(r)]));
      const keys = Object.keys(recs);
      // At most 128 keys go in one put.
      for (let i = 0; i < keys.length; i += 128) await this.storage.put(Object.fromEntries(keys.slice(i, i + 128).map((k) => [k, recs[k]])));
      await this.storage.put(SYNCED, true);
    }
    const out = new Map<string, TunnelEntry>();
    for (const [key, rec] of await this.storage.list<TunnelRecord>({ prefix: PREFIX })) out.set(key.slice(PREFIX.length), await entryOf(rec));
    return out;
  }
}

async function entryOf(rec: TunnelRecord): Promise<TunnelEntry> {
  return {
    id: rec.id,
    slug: rec.slug,
    auth_mode: rec.auth_mode,
    enabled: rec.enabled,
    target_port: rec.target_port,
    password_hash: rec.password_hash,
    password_version: rec.password_hash ? await hashVersion(rec.password_hash) : null,
  };
}
