/**
 * A running VM as the driver tracks it: its recorded QEMU and passt, the
 * connection to its guest agent (over the virtio-serial channel, whose host
 * end is QEMU's g.sock) and its control channel.
 *
 * The channel takes one host connection at a time and the guest learns that
 * the host went away only by reading end-of-file; a connection opened again
 * at once may find the guest still attached to the old one, so it gets no
 * hello. Such an attempt times out and the next waits a moment first, long
 * enough for the guest to see the close and greet the next connection.
 */
import type { ChildProcess } from 'node:child_process';
import { GuestClient } from '../../guest-client.ts';
import { ControlClient } from './control.ts';
import type { VmPaths } from './paths.ts';
import { isAlive, type VmState } from './qemu.ts';

/** Pause after a failed attempt, so the guest sees the host side close before the next one. */
const RETRY_PAUSE_MS = 300;
const FIRST_ATTEMPT_MS = 1500;

export class VmSession {
  readonly id: string;
  readonly paths: VmPaths;
  state: VmState;
  readonly control: ControlClient;
  /** Set while the driver itself is ending the VM: its death is then no news. */
  stopping = false;
  /** QEMU, when this driver started it: its exit status explains a death. */
  child: ChildProcess | null = null;
  private guest: GuestClient | null = null;
  private connecting: Promise<GuestClient | null> | null = null;
  private lastFailure = 0;
  private readonly onGuestClose: () => void;

  constructor(id: string, paths: VmPaths, state: VmState, onGuestClose: () => void) {
    this.id = id;
    this.paths = paths;
    this.state = state;
    this.onGuestClose = onGuestClose;
    this.control = new ControlClient(paths.controlSocket);
  }

  alive(): boolean {
    return isAlive(this.state);
  }

  /**
   * The guest connection, opening one if needed; null when the guest does not answer in time.
   * A first attempt that gets no hello is followed by a second after a pause: the first may
   * have come too soon after another connection closed for the guest to have noticed.
   */
  async connect(timeoutMs = 4000): Promise<GuestClient | null> {
    if (this.guest && !this.guest.closed) return this.guest;
    if (!this.connecting) {
      this.connecting = (async () => {
        const deadline = Date.now() + timeoutMs;
        for (let attempt = 0; attempt < 2 && Date.now() < deadline; attempt++) {
          const wait = this.lastFailure + RETRY_PAUSE_MS - Date.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          // A guest that has seen the last connection close greets a new one within milliseconds.
          const budget = attempt === 0 ? Math.min(FIRST_ATTEMPT_MS, deadline - Date.now()) : deadline - Date.now();
          const client = await this.open(Math.max(100, budget));
          if (client) return client;
        }
        return null;
      })().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  private async open(timeoutMs: number): Promise<GuestClient | null> {
    try {
      const client = await GuestClient.connect(this.paths.guestSocket, { timeoutMs, bootId: this.state.boot_id });
      this.guest = client;
      client.on('close', () => {
        if (this.guest === client) this.guest = null;
        this.lastFailure = Date.now();
        this.onGuestClose();
      });
      return client;
    } catch {
      this.lastFailure = Date.now();
      return null;
    }
  }

  /** Waits for the guest's hello while the VM boots: one long attempt, retried until the deadline. */
  async waitForGuest(timeoutMs: number): Promise<GuestClient | null> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && this.alive()) {
      const wait = this.lastFailure + RETRY_PAUSE_MS - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const client = await this.open(Math.max(1000, deadline - Date.now()));
      if (client) return client;
    }
    return null;
  }

  /** Connects to a guest that was already running (after a resume), trying until the deadline. */
  async reconnect(timeoutMs: number): Promise<GuestClient | null> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && this.alive()) {
      const client = await this.connect(Math.min(5000, Math.max(1000, deadline - Date.now())));
      if (client) return client;
    }
    return null;
  }

  close(): void {
    this.guest?.close();
    this.guest = null;
    this.control.close();
  }
}
