/**
 * Access tokens of protected ports: `pt_` and 32 random bytes, minted when a
 * port becomes protected and on rotation, kept encrypted at rest (the tenant
 * reads it back on the port's record), bound to the computer and port.
 */
import { randomToken } from '../http/ids.ts';
import { decryptValue, encryptValue } from '../crypto/env-cipher.ts';
import type { Env } from '../env.ts';

export const portTokenAad = (computerId: string, port: number): string => `port-token\u0000${computerId}\u0000${port}`;

export async function mintPortToken(env: Env, computerId: string, port: number): Promise<{ token: string; ciphertext: string; iv: string }> {
  const token = `pt_${randomToken(32)}`;
  const { ciphertext, iv } = await encryptValue(env.ENV_ENCRYPTION_KEY, portTokenAad(computerId, port), token);
  return { token, ciphertext, iv };
}

export const readPortToken = (env: Env, computerId: string, port: number, ciphertext: string, iv: string): Promise<string> =>
  decryptValue(env.ENV_ENCRYPTION_KEY, portTokenAad(computerId, port), ciphertext, iv);
