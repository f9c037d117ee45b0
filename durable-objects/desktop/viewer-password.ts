/**
 * The computer's viewer password, for native VNC clients: kept in the
 * ComputerObject's storage (it never enters the computer; the object checks
 * it), made on first use, replaced by rotate. VNC authentication uses at most
 * 8 characters, so it is 8 characters of an unambiguous alphabet (46 bits);
 * failed logins are limited per computer (and per address by the route).
 */
import { VNC_PASSWORD_MAX } from './vnc-auth.ts';

const ALPHABET = 'abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const KEY = 'desktop:viewer_password';
/** Failed logins per computer in a minute before further attempts are refused for the rest of it. */
export const MAX_FAILURES_PER_MINUTE = 20;

function generate(): string {
  const out: string[] = [];
  // Rejection sampling keeps every character equally likely.
  const limit = 256 - (256 % ALPHABET.length);
  while (out.length < VNC_PASSWORD_MAX) {
    for (const b of crypto.getRandomValues(new Uint8Array(16))) {
      if (b < limit && out.length < VNC_PASSWORD_MAX) out.push(ALPHABET[b % ALPHABET.length]);
    }
  }
  return out.join('');
}

export interface StoredPassword {
  password: string;
  created_at: string;
}

export class ViewerPassword {
  private failures: number[] = [];

  private readonly storage: DurableObjectStorage;

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
  }

  /** The current password, made now if there is none yet. */
  async get(): Promise<StoredPassword> {
    const kept = await this.storage.get<StoredPassword>(KEY);
    return kept ?? this.rotate();
  }

  /** The password to check a login against; null when none was ever made (then no password login works). */
  async current(): Promise<string | null> {
    return (await this.storage.get<StoredPassword>(KEY))?.password ?? null;
  }

  async rotate(): Promise<StoredPassword> {
    const next: StoredPassword = { password: generate(), created_at: new Date().toISOString() };
    await this.storage.put(KEY, next);
    return next;
  }

  /** Whether another login may be tried now. */
  mayTry(now = Date.now()): boolean {
    this.failures = this.failures.filter((t) => now - t < 60_000);
    return this.failures.length < MAX_FAILURES_PER_MINUTE;
  }

  failed(now = Date.now()): void {
    this.failures.push(now);
  }
}
