/** AES-GCM for env values at rest; the key is the ENV_ENCRYPTION_KEY secret (base64 of 32 bytes). */

const keys = new Map<string, Promise<CryptoKey>>();

function importKey(secret: string): Promise<CryptoKey> {
  let k = keys.get(secret);
  if (!k) {
    const raw = Uint8Array.from(atob(secret), (c) => c.charCodeAt(0));
    if (raw.byteLength !== 32) throw new Error('ENV_ENCRYPTION_KEY must be base64 of exactly 32 bytes');
    k = crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
    keys.set(secret, k);
  }
  return k;
}

const b64 = (b: ArrayBuffer | Uint8Array) => btoa(String.fromCharCode(...new Uint8Array(b)));
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/**
 * Encrypts one value. The computer id and variable name are bound in as
 * additional data, so a ciphertext copied to another row does not decrypt.
 */
export async function encryptValue(secret: string, aad: string, value: string): Promise<{ ciphertext: string; iv: string }> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(aad) },
    await importKey(secret),
    new TextEncoder().encode(value),
  );
  return { ciphertext: b64(ct), iv: b64(iv) };
}

export async function decryptValue(secret: string, aad: string, ciphertext: string, iv: string): Promise<string> {
  const pt = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: unb64(iv), additionalData: new TextEncoder().encode(aad) },
    await importKey(secret),
    unb64(ciphertext),
  );
  return new TextDecoder().decode(pt);
}

/** Additional data for a computer's variable. */
export const envAad = (computerId: string, name: string) => `${computerId}\u0000${name}`;

/** Decrypts every variable of a computer, for injection at boot. */
export async function loadComputerEnv(db: D1Database, secret: string, computerId: string): Promise<Record<string, string>> {
  const { results } = await db
    .prepare('SELECT name, ciphertext, iv FROM computer_env WHERE computer_id = ? ORDER BY name')
    .bind(computerId)
    .all<{ name: string; ciphertext: string; iv: string }>();
  const env: Record<string, string> = {};
  for (const r of results) env[r.name] = await decryptValue(secret, envAad(computerId, r.name), r.ciphertext, r.iv);
  return env;
}
