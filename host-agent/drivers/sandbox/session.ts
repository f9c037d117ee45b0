/**
 * A running computer as the driver tracks it: its recorded sandbox process and
 * the persistent connection to its guest agent (opened lazily, reopened after
 * a drop, e.g. when a new host agent finds a computer an old one started).
 */
import type { ChildProcess } from 'node:child_process';
import { GuestClient } from '../../guest-client.ts';
import type { ComputerCgroup } from './cgroups.ts';
import { isAlive, type SandboxState } from './launch.ts';
import type { ComputerPaths } from './paths.ts';

export class Session {
  readonly id: string;
  readonly paths: ComputerPaths;
  readonly cgroup: ComputerCgroup;
  state: SandboxState;
  /** Set while the driver itself is ending the computer: its death is then no news. */
  stopping = false;
  /** OOM kills counted in the cgroup when we started watching, to explain a death. */
  oomBaseline: number;
  /** The launcher, when this driver started it: its exit status explains a death. */
  child: ChildProcess | null = null;
  private guest: GuestClient | null = null;
  private connecting: Promise<GuestClient | null> | null = null;
  private readonly onGuestClose: () => void;

  constructor(id: string, paths: ComputerPaths, cgroup: ComputerCgroup, state: SandboxState, onGuestClose: () => void) {
    this.id = id;
    this.paths = paths;
    this.cgroup = cgroup;
    this.state = state;
    this.onGuestClose = onGuestClose;
    this.oomBaseline = cgroup.exists() ? cgroup.sample().oomKills : 0;
  }

  alive(): boolean {
    return isAlive(this.state);
  }

  /** The guest connection, opening one if needed; null when the guest does not answer. */
  async connect(timeoutMs = 2000): Promise<GuestClient | null> {
    if (this.guest && !this.guest.closed) return this.guest;
    if (!this.connecting) {
      this.connecting = GuestClient.connect(this.paths.socket, { timeoutMs, bootId: this.state.boot_id })
        .then((client) => {
          this.guest = client;
          client.on('close', () => {
            if (this.guest === client) this.guest = null;
            this.onGuestClose();
          });
          return client;
        })
        .catch(() => null)
        .finally(() => {
          this.connecting = null;
        });
    }
    return this.connecting;
  }

  /** Retries connecting until the guest answers, the sandbox dies, or time runs out (boot). */
  async waitForGuest(timeoutMs: number): Promise<GuestClient | null> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && this.alive()) {
      const client = await this.connect(1000);
      if (client) return client;
      await new Promise((r) => setTimeout(r, 15));
    }
    return null;
  }

  close(): void {
    this.guest?.close();
    this.guest = null;
  }
}
