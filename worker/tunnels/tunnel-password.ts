/**
 * Passwords of `password` tunnels, kept only as a hash: PBKDF2-SHA256 with a
 * random salt, stored as `pbkdf2$<iterations>$<salt b64>$<hash b64>`
 * (migration 0005). 100 000 iterations is the most Workers' PBKDF2 allows;
 * checking one costs tens of milliseconds of CPU, so a browser checks it once
 * (then holds a signed cookie) and the object remembers the digests of
 * passwords it has accepted until the tunnel changes.
 */
const ITERATIONS = 100_000;
const SALT_BYTES = 16;
const HASH_BYTES = 32;

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 1024;

const b64 = (bytes: Uint8Array): string => btoa(String.fromCharCode(...bytes));
const unb64 = (s: string): Uint8Array => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

async function derive(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(password), 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, key, HASH_BYTES * 8);
  return new Uint8Array(bits);
}

export async function hashPassword(password: string): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  return `pbkdf2$${ITERATIONS}$${b64(salt)}$${b64(await derive(password, salt, ITERATIONS))}`;
}

/** True when `password` is the one `stored` was made from; false for anything else, a malformed hash included. */
export async function checkPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 4 || parts[0] !== 'pbkdf2') return false;
  const iterations = Number(parts[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > ITERATIONS) return false;
  let salt: Uint8Array;
  let want: Uint8Array;
  try {
    salt = unb64(parts[2]);
    want = unb64(parts[3]);
  } catch {
    return false;
  }
  if (password.length > PASSWORD_MAX || want.length !== HASH_BYTES) return false;
  const got = await derive(password, salt, iterations);
  let diff = 0;
  for (let i = 0; i < HASH_BYTES; i++) diff |= got[i] ^ want[i];
  return diff === 0;
}

/** A short, stable fingerprint of a stored hash: cookies carry it, so a new password ends the old cookies. */
export async function hashVersion(stored: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(stored)));
  return b64(d.subarray(0, 9)).replace(/[+/=]/g, (c) => ({ '+': '-', '/': '_', '=': '' })[c]!);
}
