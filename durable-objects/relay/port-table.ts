/**
 * The computer's exposed ports as its object serves them: D1 keeps the
 * records the API lists; the port routes hand every change to the object
 * (portChanged) before they answer, so the next preview request already
 * sees it, and no preview request reads D1. A computer whose object has
 * never been told (its ports are older than this table) is read from D1 once.
 */
import type { PortVisibility } from '../../schema/api.ts';
import type { Env } from '../../worker/env.ts';
import { readPortToken } from '../../worker/preview/port-tokens.ts';
import type { PortAccess } from '../../worker/preview/preview-auth.ts';

/** A port's record as the routes hand it over (the token encrypted, as at rest). */
export interface PortRecord {
  visibility: PortVisibility;
  token_ciphertext: string | null;
  token_iv: string | null;
  wake: boolean;
}

export interface PortEntry extends PortAccess {
  wake: boolean;
}

const PREFIX = 'port:';
const SYNCED = 'ports-synced';

export class PortTable {
  private readonly storage: DurableObjectStorage;
  private readonly env: Env;
  private entries: Map<number, PortEntry> | null = null;
  private loading: Promise<Map<number, PortEntry>> | null = null;

  constructor(storage: DurableObjectStorage, env: Env) {
    this.storage = storage;
    this.env = env;
  }

  async get(computerId: string, port: number): Promise<PortEntry | null> {
    return (await this.all(computerId)).get(port) ?? null;
  }

  /** Records a change the routes made in D1 (null: the port is no longer exposed). */
  async set(computerId: string, port: number, rec: PortRecord | null): Promise<void> {
    const all = await this.all(computerId);
    if (rec) {
      await this.storage.put(PREFIX + port, rec);
      all.set(port, await this.entry(computerId, port, rec));
    } else {
      await this.storage.delete(PREFIX + port);
      all.delete(port);
    }
  }

  private all(computerId: string): Promise<Map<number, PortEntry>> {
    if (this.entries) return Promise.resolve(this.entries);
    this.loading ??= this.load(computerId).then((m) => (this.entries = m));
    return this.loading;
  }

  private async load(computerId: string): Promise<Map<number, PortEntry>> {
    if (!(await this.storage.get(SYNCED))) {
      const { results } = await this.env.DB.prepare('SELECT port, visibility, access_token_ciphertext, access_token_iv, wake FROM computer_ports WHERE computer_id = ?')
        .bind(computerId)
        .all<{ port: number; visibility: PortVisibility; access_token_ciphertext: string | null; access_token_iv: string | null; wake: number }>();
      const recs: Record<string, PortRecord> = {};
      for (const r of results) recs[PREFIX + r.port] = { visibility: r.visibility, token_ciphertext: r.access_token_ciphertext, token_iv: r.access_token_iv, wake: r.wake === 1 };
      const keys = Object.keys(recs);
      // At most 128 keys go in one put.
      for (let i = 0; i < keys.length; i += 128) await this.storage.put(Object.fromEntries(keys.slice(i, i + 128).map((k) => [k, recs[k]])));
      await this.storage.put(SYNCED, true);
    }
    const out = new Map<number, PortEntry>();
    for (const [key, rec] of await this.storage.list<PortRecord>({ prefix: PREFIX })) {
      const port = Number(key.slice(PREFIX.length));
      out.set(port, await this.entry(computerId, port, rec));
    }
    return out;
  }

  private async entry(computerId: string, port: number, rec: PortRecord): Promise<PortEntry> {
    const token = rec.token_ciphertext && rec.token_iv ? await readPortToken(this.env, computerId, port, rec.token_ciphertext, rec.token_iv) : null;
    return { visibility: rec.visibility, token, wake: rec.wake };
  }
}
