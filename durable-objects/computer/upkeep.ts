/**
 * The computer's one alarm and what it serves: credits charged each minute
 * while running (a broke organization's computer stops), auto-stop after the
 * configured idle time, and the expiry of old command logs and idle terminals.
 */
import type { Env } from '../../worker/env.ts';
import type { ComputerRecord } from './record.ts';
import { BILLING_INTERVAL_MS, balanceOf, charge, nextAlarm } from './usage.ts';

/** How soon a due stop (idle, or out of credits) is tried again when the agent could not do it. */
const STOP_RETRY_MS = 15_000;
/** Activity is stored now and then, so an evicted object does not forget recent use. */
const ACTIVITY_STORE_MS = 10_000;

/** What upkeep needs of its object. */
export interface UpkeepHost {
  record(): ComputerRecord | null;
  /** A command or terminal runs: the computer is in use. */
  busy(): boolean;
  /** Earliest log or terminal expiry, if any. */
  expiries(): (number | null)[];
  /** Drops expired logs and idle terminals. */
  sweep(): Promise<void>;
  /** Stops the computer through its agent, saying why; false when that failed. */
  stop(reason: 'auto_stopped' | 'credits_exhausted'): Promise<boolean>;
}

export class Upkeep {
  private lastActivity = Date.now();
  private lastActivityStored = 0;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly env: Env,
    private readonly host: UpkeepHost,
  ) {}

  async load(): Promise<void> {
    this.lastActivity = (await this.ctx.storage.get<number>('last_activity')) ?? Date.now();
  }

  /** Any API, exec or terminal use counts as activity for auto-stop. */
  touch(): void {
    this.lastActivity = Date.now();
    if (this.lastActivity - this.lastActivityStored > ACTIVITY_STORE_MS) {
      this.lastActivityStored = this.lastActivity;
      void this.ctx.storage.put('last_activity', this.lastActivity); // coalesced by the storage layer, not awaited
    }
  }

  /** The computer started running: billing starts now. */
  async started(): Promise<void> {
    await this.ctx.storage.put('billed_until', Date.now());
    this.touch();
    await this.schedule();
  }

  /** The computer stopped running: charge what is left. */
  async stopped(rec: ComputerRecord): Promise<void> {
    const from = await this.ctx.storage.get<number>('billed_until');
    if (from !== undefined) {
      await charge(this.env.DB, rec.org_id, rec.id, rec.size, Date.now() - from);
      await this.ctx.storage.delete('billed_until');
    }
    await this.schedule();
  }

  async schedule(): Promise<void> {
    const rec = this.host.record();
    const [logExpiry, terminalExpiry] = this.host.expiries();
    const at = nextAlarm({
      running: rec?.status === 'running',
      billedUntil: (await this.ctx.storage.get<number>('billed_until')) ?? Date.now(),
      autoStopS: rec?.auto_stop ?? 0,
      lastActivity: this.lastActivity,
      busy: this.host.busy(),
      logExpiry: logExpiry ?? null,
      terminalExpiry: terminalExpiry ?? null,
    });
    if (at === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(Math.max(at, Date.now() + 10));
  }

  /** The alarm: billing, auto-stop, expiries — whichever is due. */
  async run(): Promise<void> {
    await this.host.sweep();
    const rec = this.host.record();
    if (!rec || rec.status !== 'running') return this.schedule();
    await this.ctx.storage.put('last_activity', this.lastActivity);
    const now = Date.now();
    const billedUntil = (await this.ctx.storage.get<number>('billed_until')) ?? now;
    let balance: number | null = null;
    if (now - billedUntil >= BILLING_INTERVAL_MS) {
      balance = await charge(this.env.DB, rec.org_id, rec.id, rec.size, now - billedUntil);
      await this.ctx.storage.put('billed_until', now);
    }
    const broke = (balance ?? (await balanceOf(this.env.DB, rec.org_id))) <= 0;
    const idle = rec.auto_stop > 0 && !this.host.busy() && now - this.lastActivity >= rec.auto_stop * 1000;
    if (broke || idle) {
      if (await this.host.stop(broke ? 'credits_exhausted' : 'auto_stopped')) return;
      // The agent is away or refused: try again later. The stop stays due, so neither
      // re-arm at the (past) deadline, which would spin, nor drop the alarm, which would run free.
      if (this.host.record()?.status === 'running') await this.ctx.storage.setAlarm(now + STOP_RETRY_MS);
      return;
    }
    await this.schedule();
  }
}
