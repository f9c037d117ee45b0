/**
 * Credentials we mint: tenant API keys (`msk_live_…`, `msk_test_…`) and host
 * keys (`hk_…`). Only their sha256 is stored; the plaintext is shown once.
 */
import { isoNow, newId, randomToken, sha256Hex } from '../http/ids.ts';

export type KeyMode = 'live' | 'test';

/** Shape of a tenant API key: prefix then 43 url-safe characters (32 random bytes). */
export const API_KEY_RE = /^msk_(live|test)_[A-Za-z0-9_-]{20,128}$/;

/** A JWT is three base64url segments; anything else on a tenant route is treated as an API key. */
export const looksLikeJwt = (token: string): boolean => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);

export interface MintedKey {
  /** The plaintext, returned to the caller once and never stored. */
  key: string;
  hash: string;
  /** Enough of the key for a person to tell keys apart, not enough to guess it. */
  prefix: string;
}

async function mint(prefix: string, prefixShown: number): Promise<MintedKey> {
  const key = `${prefix}${randomToken(32)}`;
  return { key, hash: await sha256Hex(key), prefix: key.slice(0, prefix.length + prefixShown) };
}

/** A new tenant API key of the given mode. */
export const mintApiKey = (mode: KeyMode): Promise<MintedKey> => mint(`msk_${mode}_`, 4);

/** A new host key for a host agent (`hangar-agent --key hk_…`). */
export const mintHostKey = (): Promise<MintedKey> => mint('hk_', 4);

/**
 * Compares two secrets in constant time. Both sides are hashed first so the
 * comparison never depends on (or leaks) the lengths of the inputs.
 */
export async function secretsEqual(given: string, expected: string): Promise<boolean> {
  if (!expected) return false;
  const enc = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest('SHA-256', enc.encode(given)),
    crypto.subtle.digest('SHA-256', enc.encode(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}

/**
 * Registers a host (an operator's fleet host, or a tenant's own with its
 * organization) in status `pending`; returns its id and its key, which is
 * shown to the caller once and stored only as a hash.
 */
export async function insertHost(
  db: D1Database,
  host: { org_id: string | null; kind: 'fleet' | 'byo'; name: string; region: string; labels: Record<string, string> },
): Promise<{ id: string; key: string }> {
  const minted = await mintHostKey();
  const id = newId();
  const now = isoNow();
  await db
    .prepare(
      `INSERT INTO hosts (id, org_id, kind, name, region, labels, status, key_hash, key_prefix, drivers, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, '[]', ?, ?)`,
    )
    .bind(id, host.org_id, host.kind, host.name, host.region, JSON.stringify(host.labels), minted.hash, minted.prefix, now, now)
    .run();
  return { id, key: minted.key };
}
