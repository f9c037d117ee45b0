/**
 * Driving the agent through lifecycle operations. A user action first
 * persists its in-flight status (starting, stopping…), then asks the agent,
 * then applies what the agent reports. If the agent goes away midway the
 * status stays in flight, and when an agent attaches again `reconcile`
 * finishes the operation from what the host actually has.
 */
import { fail, ok, type Result } from '../../schema/errors.ts';
import type { ActualState, ComputerSpec, LifecycleResult } from '../../schema/protocol.ts';
import { envOverLimits } from '../../schema/api.ts';
import { noRoomOnHost } from '../../worker/computers/placement.ts';
import { IN_FLIGHT, REFUSAL, type LifecycleEvent, type Status } from './state-table.ts';
import type { ComputerObject } from '../computer-object.ts';
import { mirrorAddress, mirrorMemoryKept } from './record.ts';
import type { Why } from './events.ts';
import { speaks } from '../../schema/protocol.ts';

/** The first agent protocol minor that can keep a computer's memory when it stops. */
const KEEP_MEMORY_MINOR = 7;

const PROVISION_MS = 20 * 60_000; // first boot may build the template and install apps
const START_MS = 120_000;
const STOP_MS = 60_000;
const DESTROY_MS = 120_000;
/**
 * Boots begun in a row without one succeeding, at most. Counted when a boot
 * begins, not when it fails: a boot that takes its agent down with it never
 * reports, and must not be tried again at every reconnect for ever.
 */
export const MAX_BOOT_ATTEMPTS = 3;

const BOOTS: ReadonlySet<Status> = new Set(['provisioning', 'starting', 'restarting']);

export class Lifecycle {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly obj: ComputerObject,
    private readonly db: D1Database,
  ) {}

  /** A start, stop or restart: a user's (the default reason), or the object's own (auto-stop, credits). */
  async run(action: 'start' | 'stop' | 'restart', why?: Why): Promise<Result<Status>> {
    if (!this.obj.link.socket()) return fail('AGENT_UNAVAILABLE', "the computer's host agent is not connected; try again shortly");
    // Started again by hand after it gave up: one more try, and the error again if that fails too.
    if (action === 'start' && this.obj.record?.status === 'error') await this.obj.save({ boot_attempts: MAX_BOOT_ATTEMPTS - 1 });
    // A start takes its room on the host first (atomically, in D1): a host never takes more than it has.
    if (action === 'start' && !(await this.obj.reserveStart())) {
      const rec = this.obj.record!;
      const err = noRoomOnHost('start', rec.size);
      return fail(err.code, err.message);
    }
    const mid = await this.obj.apply(action, why);
    if (!mid) return fail('INVALID_STATE_TRANSITION', REFUSAL[action]);
    return this.drive(mid);
  }

  /** Called when an agent attaches and says what the host has; operations queue so two attaches never interleave. */
  reconcile(actual: ActualState): Promise<void> {
    const next = this.queue.then(() => this.reconcileOnce(actual)).catch((e) => console.error('reconcile failed', e));
    this.queue = next;
    return next;
  }

  private async reconcileOnce(actual: ActualState): Promise<void> {
    const rec = this.obj.record;
    if (!rec) return;
    if (rec.status === 'moving') {
      await this.obj.mover.recover();
      return;
    }
    if (rec.status === 'restoring') {
      await this.obj.snapshots.recover();
      return;
    }
    if (rec.status === 'deleting') {
      const r = await this.obj.link.request('computer.destroy', {}, DESTROY_MS);
      if (r.ok) await this.obj.forget();
      return;
    }
    if (actual === 'absent' && rec.status !== 'provisioning') {
      await this.obj.save({ broken: 'disk' });
      await this.obj.apply('lost', { reason: 'lost', message: "the host no longer has this computer's disk" });
      return;
    }
    if (IN_FLIGHT.has(rec.status)) {
      await this.drive(rec.status);
      return;
    }
    if (rec.status === 'running' && actual === 'stopped') {
      // The host lost it (reboot, crash): say so, then bring it back as a running computer should be.
      await this.obj.apply('exited', { reason: 'exited', message: 'the host no longer ran it (it restarted, or the computer died while its agent was away)' });
      if (await this.obj.apply('start', { reason: 'host_restarted' })) await this.drive('starting');
      return;
    }
    if (rec.status === 'stopped' && actual === 'running') {
      await this.obj.link.request('computer.stop', {}, STOP_MS);
    }
  }

  /** After a stop with keep_memory the host holds the memory; any boot (or a plain stop) uses or drops it. */
  private async noteMemory(done: LifecycleEvent): Promise<void> {
    const rec = this.obj.record;
    if (!rec) return;
    const kept = done === 'stopped' ? !!rec.keep_memory : false;
    if (kept === !!rec.memory_kept && rec.keep_memory === undefined) return;
    await this.obj.save({ memory_kept: kept, keep_memory: undefined });
    await mirrorMemoryKept(this.db, rec.id, kept);
  }

  /** Asks the agent to finish the operation an in-flight status names, then applies the outcome. */
  private async drive(status: Status): Promise<Result<Status>> {
    if (BOOTS.has(status)) {
      const refused = await this.countBoot(status);
      if (refused) return refused;
    }
    const link = this.obj.link;
    let r: Result<LifecycleResult>;
    let done: LifecycleEvent;
    let expect: ActualState = 'running';
    switch (status) {
      case 'provisioning': {
        const rec = this.obj.record!;
        const snapshot = rec.restore_snapshot;
        const spec = await this.bootSpec();
        r = spec.ok ? await link.request('computer.provision', { spec: spec.value, clone_from: rec.clone_from, snapshot_id: snapshot }, PROVISION_MS) : spec;
        done = 'provisioned';
        if (r.ok) await this.obj.save({ clone_from: undefined, restore_snapshot: undefined });
        if (snapshot) this.obj.snapshots.restoredInto(rec, snapshot, r);
        break;
      }
      case 'starting': {
        const spec = await this.bootSpec();
        r = spec.ok ? await link.request('computer.start', { spec: spec.value }, START_MS) : spec;
        done = 'started';
        break;
      }
      case 'restarting': {
        const spec = await this.bootSpec();
        const stopped = spec.ok ? await link.request('computer.stop', {}, STOP_MS) : spec;
        r = stopped.ok && spec.ok ? await link.request('computer.start', { spec: spec.value }, START_MS) : stopped;
        done = 'restarted';
        break;
      }
      case 'stopping': {
        const keep = !!this.obj.record?.keep_memory;
        const protocol = link.protocol();
        if (keep && protocol && !speaks(protocol, KEEP_MEMORY_MINOR)) {
          r = fail('AGENT_ERROR', "this computer's host agent is too old to keep its memory; update it, or stop without keep_memory");
        } else {
          r = await link.request('computer.stop', keep ? { keep_memory: true } : {}, STOP_MS);
        }
        done = 'stopped';
        expect = 'stopped';
        break;
      }
      default:
        return ok(status);
    }
    if (!r.ok) {
      // Without an agent the status stays in flight; the next attach finishes it.
      if (r.code !== 'AGENT_UNAVAILABLE') await this.failed(status, r.message);
      return r;
    }
    if (r.value.state !== expect) {
      const message = `the host reports the computer ${r.value.state} after ${status}`;
      await this.failed(status, message);
      return fail('AGENT_ERROR', message);
    }
    if (BOOTS.has(status)) await this.obj.save({ boot_attempts: 0, broken: undefined });
    const final = await this.obj.apply(done);
    await this.noteMemory(done);
    if (r.value.ip_address !== undefined && this.obj.record) await mirrorAddress(this.db, this.obj.record.id, r.value.ip_address);
    return ok(final ?? status);
  }

  /** The spec to boot with; a failure when the stored environment is over the limits (variables stored before there were limits). */
  private async bootSpec(): Promise<Result<ComputerSpec>> {
    const spec = await this.obj.spec();
    const over = envOverLimits(spec.env);
    if (!over) return ok(spec);
    return fail('VALIDATION_FAILED', `the computer's environment variables are over the limits (${over}); delete some with DELETE …/env/{name} and start it again`);
  }

  /**
   * Counts a boot about to begin; after MAX_BOOT_ATTEMPTS in a row without
   * success the computer goes to `error` instead, and the failure to answer with is returned.
   */
  private async countBoot(status: Status): Promise<Result<Status> | null> {
    const rec = this.obj.record!;
    const attempts = (rec.boot_attempts ?? 0) + 1;
    if (attempts > MAX_BOOT_ATTEMPTS) {
      const reason = `its boot was tried ${MAX_BOOT_ATTEMPTS} times in a row without success${rec.status_reason ? ` (last: ${rec.status_reason})` : ''}`;
      await this.obj.save({ broken: status === 'provisioning' ? 'provision' : 'boot' });
      await this.obj.apply('gave_up', { reason: 'failed', message: reason });
      return fail('AGENT_ERROR', `the computer could not be started: ${reason}`);
    }
    await this.obj.save({ boot_attempts: attempts });
    return null;
  }

  /** An operation the agent answered with a failure: the status says so, and why. */
  private async failed(status: Status, message: string): Promise<void> {
    const rec = this.obj.record;
    if (!rec) return;
    // A stop that asked to keep the memory and failed kept nothing.
    if (rec.keep_memory !== undefined) await this.obj.save({ keep_memory: undefined });
    if (!BOOTS.has(status)) {
      await this.obj.apply('failed', { reason: 'failed', message: `stop failed: ${message}` });
      return;
    }
    const what = status === 'provisioning' ? 'provisioning' : 'boot';
    const reason = `${what} failed: ${message}`;
    if (status === 'provisioning' || (rec.boot_attempts ?? 0) >= MAX_BOOT_ATTEMPTS) {
      await this.obj.save({ broken: status === 'provisioning' ? 'provision' : 'boot' });
      await this.obj.apply('gave_up', { reason: 'failed', message: reason });
    } else {
      await this.obj.apply('failed', { reason: 'failed', message: reason });
    }
  }
}
