/**
 * The running VMs of a driver: starting them (a boot, or a load of saved
 * memory), tracking them (a session each: the QEMU and passt recorded in
 * state.json, the guest and control channels), powering them off, and
 * noticing the ones that end on their own. The driver decides what to run
 * and when; this module knows how.
 */
import fs from 'node:fs';
import { DriverError } from '../driver.ts';
import type { GuestClient } from '../../guest-client.ts';
import type { ComputerLocks } from '../guest-ops.ts';
import { finishResume, type MemoryRecord } from './memory-image.ts';
import { vmPaths, type VmPaths } from './paths.ts';
import { exits, kill, quitOrKill, quitQemu } from './power.ts';
import { clearState, isAlive, killNetwork, launchVm, readState, resumeVm, tail, type LaunchConfig, type VmState } from './qemu.ts';
import { VmSession } from './session.ts';

export class Machines {
  private readonly dataDir: string;
  private readonly locks: ComputerLocks;
  private readonly sessions = new Map<string, VmSession>();
  private readonly exitListeners: Array<(id: string, reason: string) => void> = [];

  constructor(dataDir: string, locks: ComputerLocks) {
    this.dataDir = dataDir;
    this.locks = locks;
  }

  onExit(listener: (id: string, reason: string) => void): void {
    this.exitListeners.push(listener);
  }

  /** The session of a computer whose VM is alive, picking up ones an earlier agent started. */
  session(id: string): VmSession | null {
    const known = this.sessions.get(id);
    if (known) return known.alive() ? known : null;
    const paths = vmPaths(this.dataDir, id);
    const state = readState(paths);
    if (!state || !isAlive(state)) return null;
    return this.track(id, paths, state);
  }

  /** Boots a VM and waits until its guest answers and its network is up; a VM that does not come up is stopped. */
  async boot(cfg: LaunchConfig, timeoutMs: number): Promise<{ session: VmSession; guest: GuestClient }> {
    const { id, paths } = cfg;
    const { state, child } = await launchVm(cfg).catch((err: unknown) => {
      this.forget(id, paths);
      throw err;
    });
    const session = this.track(id, paths, state);
    session.child = child;
    child.once('exit', () => this.checkExit(id));
    const guest = await session.waitForGuest(timeoutMs);
    if (!guest) {
      const why = session.alive() ? 'the guest agent did not answer' : `the VM stopped while booting: ${tail(paths.qemuLog, 2)}`;
      await this.powerOff(id);
      throw new DriverError('FAILED', `the computer did not come up (${why}); console: ${tail(paths.log, 6)}`);
    }
    // Running means reachable and online: the network comes up while the guest agent starts.
    await session.control.request('ready', 35_000).catch(() => undefined);
    return { session, guest };
  }

  /** Loads a memory image into the machine `saved` describes, lets it run and reconnects to its guest. */
  async resume(id: string, paths: VmPaths, saved: MemoryRecord, image: string, dnsForward: boolean, loaded: () => void): Promise<{ session: VmSession; guest: GuestClient }> {
    const { state, child } = await resumeVm(paths, saved, dnsForward, image);
    const session = this.track(id, paths, state);
    session.child = child;
    child.once('exit', () => this.checkExit(id));
    await finishResume(paths, 120_000);
    loaded();
    // The guest may still hold the connection of before the save; it greets a new one once it
    // has read that one's end: give it a moment to, and connect() retries if it was not enough.
    await new Promise((r) => setTimeout(r, 250));
    const guest = await session.reconnect(60_000);
    if (!guest) throw new DriverError('FAILED', 'the guest agent did not answer after the memory was loaded');
    return { session, guest };
  }

  /** Clean power-off through the control loop, within a deadline; then QEMU is told to quit, then killed. */
  async powerOff(id: string): Promise<void> {
    const paths = vmPaths(this.dataDir, id);
    const session = this.sessions.get(id) ?? this.session(id);
    if (session) session.stopping = true;
    const state = readState(paths);
    if (state && isAlive(state)) {
      const graceMs = state.accel === 'kvm' ? 10_000 : 30_000;
      const asked = await (session?.control.request('poweroff', 5000).then(() => true, () => false) ?? Promise.resolve(false));
      if (!asked || !(await exits(state, graceMs))) {
        await quitQemu(paths);
        if (!(await exits(state, 5000))) kill(state.pid);
      }
      if (!(await exits(state, 10_000))) throw new DriverError('FAILED', `computer ${id} did not stop`);
    }
    await killNetwork(state);
    this.forget(id, paths);
  }

  /** Ends a VM whose state was just saved (it is paused): QEMU quits, its network goes. */
  async quitSaved(id: string, session: VmSession): Promise<void> {
    await quitOrKill(session.paths, session.state);
    await killNetwork(session.state);
    this.forget(id, session.paths);
  }

  /** Ends a VM that did not come up as it should (no clean power-off: nothing of the tenant's runs there yet). */
  async abandon(id: string, paths: VmPaths): Promise<void> {
    const session = this.sessions.get(id);
    if (session) session.stopping = true;
    const state = readState(paths);
    if (state && isAlive(state)) kill(state.pid);
    if (state) await exits(state, 10_000);
    await killNetwork(state);
    this.forget(id, paths);
  }

  /** Freezes a running computer's disk for a consistent copy; the returned function thaws it. */
  async freeze(id: string): Promise<() => Promise<void>> {
    const session = this.session(id);
    if (!session) return async () => undefined; // stopped: the image is at rest
    await session.control.request('freeze', 30_000).catch((err: Error) => {
      throw new DriverError('FAILED', `cannot freeze the disk of ${id} for a copy: ${err.message}`);
    });
    return async () => {
      await session.control.request('thaw', 30_000).catch(() => undefined);
    };
  }

  /** Looks for VMs that ended on their own (also told by QEMU's exit and the guest channel's close). */
  checkAll(): void {
    for (const id of [...this.sessions.keys()]) this.checkExit(id);
  }

  close(): void {
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }

  private track(id: string, paths: VmPaths, state: VmState): VmSession {
    this.sessions.get(id)?.close();
    const session = new VmSession(id, paths, state, () => this.checkExit(id));
    this.sessions.set(id, session);
    return session;
  }

  private forget(id: string, paths: VmPaths): void {
    this.sessions.get(id)?.close();
    this.sessions.delete(id);
    clearState(paths);
    for (const f of [paths.guestSocket, paths.controlSocket, paths.qmpSocket]) fs.rmSync(f, { force: true });
  }

  /** Notices a VM that ended on its own, cleans up after it and tells the listeners. */
  private checkExit(id: string): void {
    const session = this.sessions.get(id);
    if (!session || session.stopping || session.alive()) return;
    // QEMU is ours and dead but not yet reaped: its 'exit' event (which calls this again) has the status.
    if (session.child && session.child.exitCode === null && session.child.signalCode === null) return;
    this.sessions.delete(id);
    session.close();
    const code = session.child?.exitCode;
    const signal = session.child?.signalCode;
    const reason =
      code === 0 ? 'the computer powered itself off' : `the VM's QEMU exited${code != null ? ` with code ${code}` : ''}${signal ? ` by ${signal}` : ''}`;
    void this.locks
      .run(id, async () => {
        await killNetwork(readState(session.paths));
        this.forget(id, session.paths);
      })
      .finally(() => {
        for (const listener of this.exitListeners) listener(id, reason);
      });
  }
}
