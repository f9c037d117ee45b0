/**
 * RFB "VNC Authentication" (security type 2): the server sends 16 random
 * bytes, the client answers them DES-encrypted under the password. The key is
 * the password's first 8 bytes, zero-padded, each byte with its bits in
 * reverse order (a quirk every VNC implementation shares), so passwords are
 * at most 8 characters.
 */
import { desEncrypt } from './des.ts';

export const VNC_PASSWORD_MAX = 8;
export const CHALLENGE_BYTES = 16;

function vncKey(password: string): Uint8Array {
  const raw = new TextEncoder().encode(password).subarray(0, VNC_PASSWORD_MAX);
  const key = new Uint8Array(8);
  raw.forEach((b, i) => {
    let r = 0;
    for (let bit = 0; bit < 8; bit++) r |= ((b >> bit) & 1) << (7 - bit);
    key[i] = r;
  });
  return key;
}

/** The answer a client with `password` gives to `challenge`. */
export function vncAuthResponse(password: string, challenge: Uint8Array): Uint8Array {
  return desEncrypt(vncKey(password), challenge);
}

/** Whether `response` answers `challenge` under `password` (compared in constant time). */
export function vncAuthMatches(password: string, challenge: Uint8Array, response: Uint8Array): boolean {
  const want = vncAuthResponse(password, challenge);
  if (response.byteLength !== want.byteLength) return false;
  let diff = 0;
  for (let i = 0; i < want.byteLength; i++) diff |= want[i] ^ response[i];
  return diff === 0;
}
