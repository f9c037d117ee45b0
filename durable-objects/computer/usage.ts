/** Credits burn while a computer runs, by size, charged from its organization's balance. */
import { SIZES, type Size } from '../../schema/sizes.ts';
import { isoNow } from '../../worker/http/ids.ts';

/** How often a running computer is charged (and its balance checked). */
export const BILLING_INTERVAL_MS = 60_000;

/** Charges the organization for `ms` of running time; returns the balance after. */
export async function charge(db: D1Database, orgId: string, computerId: string, size: Size, ms: number): Promise<number> {
  const amount = (SIZES[size].credits_per_hour * ms) / 3_600_000;
  const [balance] = await db.batch<{ credits: number }>([
    db.prepare('UPDATE organizations SET credits = credits - ?, updated_at = ? WHERE id = ? RETURNING credits').bind(amount, isoNow(), orgId),
    db
      .prepare('INSERT INTO credit_transactions (id, org_id, amount, reason, computer_id, created_at) VALUES (?, ?, ?, ?, ?, ?)')
      .bind(crypto.randomUUID(), orgId, -amount, 'usage', computerId, isoNow()),
  ]);
  return balance.results[0]?.credits ?? 0;
}

/** The organization's balance; starting or creating a computer needs it above zero. */
export async function balanceOf(db: D1Database, orgId: string): Promise<number> {
  const row = await db.prepare('SELECT credits FROM organizations WHERE id = ?').bind(orgId).first<{ credits: number }>();
  return row?.credits ?? 0;
}

export interface AlarmInputs {
  running: boolean;
  billedUntil: number;
  /** 0 is never. */
  autoStopS: number;
  lastActivity: number;
  /** A command or terminal is running: not idle. */
  busy: boolean;
  /** When the oldest ended command's log is due for removal. */
  logExpiry: number | null;
  /** When the next terminal session nobody watches is due to end. */
  terminalExpiry: number | null;
}

/** When the object's one alarm should next fire: the earliest of billing, auto-stop, log and terminal expiry; null for none. */
export function nextAlarm(a: AlarmInputs): number | null {
  const due: number[] = [];
  if (a.running) {
    due.push(a.billedUntil + BILLING_INTERVAL_MS);
    if (a.autoStopS > 0 && !a.busy) due.push(a.lastActivity + a.autoStopS * 1000);
  }
  if (a.logExpiry !== null) due.push(a.logExpiry);
  if (a.terminalExpiry !== null) due.push(a.terminalExpiry);
  return due.length ? Math.min(...due) : null;
}
