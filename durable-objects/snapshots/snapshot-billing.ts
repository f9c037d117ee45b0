/**
 * Snapshots cost credits for the disk they hold, charged to their organization
 * by its OrgEventsObject once an hour: each charge covers the time since the
 * last one, for the snapshots (ready, or being restored) that exist then, at
 * SNAPSHOT_CREDITS_PER_GIB_HOUR per GiB of their size. A kept snapshot of a
 * deleted computer is charged like any other. The alarm stops when the
 * organization has no snapshot left and starts again with the next one.
 */
import type { Env } from '../../worker/env.ts';
import { isoNow } from '../../worker/http/ids.ts';

export const SNAPSHOT_BILLING_MS = 3_600_000;
export const DEFAULT_SNAPSHOT_CREDITS_PER_GIB_HOUR = 0.001;
/** A charge never covers more than this (an alarm that was late by a day does not bill the day twice over). */
const MAX_PERIOD_MS = 24 * 3_600_000;

const GiB = 1024 ** 3;

/** The var's rate, or the default when it is unset or not a number of credits (0 is free). */
export function snapshotRate(env: Env): number {
  const raw = env.SNAPSHOT_CREDITS_PER_GIB_HOUR?.trim();
  const v = raw ? Number(raw) : NaN;
  return Number.isFinite(v) && v >= 0 ? v : DEFAULT_SNAPSHOT_CREDITS_PER_GIB_HOUR;
}

/** Credits for `bytes` of snapshots held for `ms` (pure). */
export const snapshotCharge = (bytes: number, ms: number, ratePerGibHour: number): number => (bytes / GiB) * ratePerGibHour * (Math.min(ms, MAX_PERIOD_MS) / 3_600_000);

export class SnapshotBilling {
  constructor(
    private readonly ctx: DurableObjectState,
    private readonly env: Env,
  ) {}

  /** A snapshot of the organization became ready: make sure the hourly charge runs. */
  async changed(orgId: string): Promise<void> {
    await this.ctx.storage.put('org_id', orgId);
    if ((await this.ctx.storage.getAlarm()) !== null) return;
    // Nothing was held since the last charge (or ever): the next charge starts now.
    await this.ctx.storage.put('snapshots_billed_at', Date.now());
    await this.ctx.storage.setAlarm(Date.now() + SNAPSHOT_BILLING_MS);
  }

  /** The alarm: charges the time since the last charge; the next one in an hour while snapshots remain. */
  async run(now = Date.now()): Promise<{ charged: number; bytes: number }> {
    const orgId = await this.ctx.storage.get<string>('org_id');
    if (!orgId) return { charged: 0, bytes: 0 };
    const since = (await this.ctx.storage.get<number>('snapshots_billed_at')) ?? now;
    const held = await this.env.DB.prepare(`SELECT COUNT(*) AS n, COALESCE(SUM(rootfs_size_bytes), 0) AS bytes FROM snapshots WHERE org_id = ? AND status IN ('ready', 'restoring')`)
      .bind(orgId)
      .first<{ n: number; bytes: number }>();
    const bytes = held?.bytes ?? 0;
    const amount = snapshotCharge(bytes, now - since, snapshotRate(this.env));
    if (amount > 0) {
      await this.env.DB.batch([
        this.env.DB.prepare('UPDATE organizations SET credits = credits - ?, updated_at = ? WHERE id = ?').bind(amount, isoNow(now), orgId),
        this.env.DB.prepare('INSERT INTO credit_transactions (id, org_id, amount, reason, computer_id, created_at) VALUES (?, ?, ?, ?, NULL, ?)').bind(
          crypto.randomUUID(),
          orgId,
          -amount,
          'snapshot_storage',
          isoNow(now),
        ),
      ]);
    }
    await this.ctx.storage.put('snapshots_billed_at', now);
    if ((held?.n ?? 0) > 0) await this.ctx.storage.setAlarm(now + SNAPSHOT_BILLING_MS);
    return { charged: amount, bytes };
  }
}
