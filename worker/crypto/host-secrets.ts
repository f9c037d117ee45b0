/**
 * OpenComputers secrets at rest: AES-GCM with the ENV_ENCRYPTION_KEY secret,
 * bound to the secret's id (a ciphertext copied to another row does not
 * decrypt). Decrypted only to hand a host's agent the set it needs.
 */
import { decryptValue, encryptValue } from './env-cipher.ts';

const aad = (secretId: string) => `oc-secret\u0000${secretId}`;

export const sealSecret = (key: string, secretId: string, value: string) => encryptValue(key, aad(secretId), value);

/**
 * Every secret a host's jobs get, by name: the organization's, then the
 * host's own on top (the host's win a clash).
 */
export async function loadHostSecrets(db: D1Database, key: string, orgId: string, hostId: string): Promise<Record<string, string>> {
  const { results } = await db
    .prepare('SELECT id, name, host_id, ciphertext, iv FROM oc_secrets WHERE org_id = ? AND (host_id IS NULL OR host_id = ?) ORDER BY host_id IS NOT NULL, name')
    .bind(orgId, hostId)
    .all<{ id: string; name: string; ciphertext: string; iv: string }>();
  const env: Record<string, string> = {};
  for (const r of results) env[r.name] = await decryptValue(key, aad(r.id), r.ciphertext, r.iv);
  return env;
}
