/**
 * The secrets of a tenant host as its HostObject holds them: decrypted from
 * D1 into memory only (never the object's storage), handed to the connected
 * agent (secrets.set, kept in its memory, given to every process it starts),
 * and masked in job output. Values a job may still carry after a change stay
 * masked for as long as the object is awake.
 */
import type { Env } from '../../worker/env.ts';
import { loadHostSecrets } from '../../worker/crypto/host-secrets.ts';
import { SecretSet } from './secret-mask.ts';

export class HostSecrets {
  private env: Record<string, string> | null = null;
  private loading: Promise<void> | null = null;
  private readonly seen = new Set<string>();
  private masks = new SecretSet([]);

  constructor(private readonly workerEnv: Env) {}

  /** Loads the secrets once (again after `reload`); output waits for this, so nothing is shown unmasked. */
  ready(orgId: string, hostId: string): Promise<void> {
    if (this.env) return Promise.resolve();
    this.loading ??= this.load(orgId, hostId).finally(() => (this.loading = null));
    return this.loading;
  }

  /** A secret changed: the new set, loaded now. */
  async reload(orgId: string, hostId: string): Promise<Record<string, string>> {
    this.env = null;
    await this.ready(orgId, hostId);
    return this.current();
  }

  current(): Record<string, string> {
    return { ...(this.env ?? {}) };
  }

  /** Every value to mask: today's, and earlier ones running jobs may still have. */
  set(): SecretSet {
    return this.masks;
  }

  private async load(orgId: string, hostId: string): Promise<void> {
    const env = await loadHostSecrets(this.workerEnv.DB, this.workerEnv.ENV_ENCRYPTION_KEY, orgId, hostId);
    let grew = false;
    for (const v of Object.values(env)) {
      if (!this.seen.has(v)) {
        this.seen.add(v);
        grew = true;
      }
    }
    if (grew) this.masks = new SecretSet(this.seen);
    this.env = env;
  }
}
