/**
 * Watches of what happens inside a computer (protocol 1.6 watch.start /
 * watch.stop), agent side: each runs in the computer's guest, and its event
 * batches go to the ComputerObject as `watch.events` messages, in order.
 * While the server connection is down, batches are dropped (the object
 * restarts its watches when it sees the agent again).
 */
import type { ComputerAgentMessage } from '../../schema/protocol.ts';
import type { WatchProducers, WatchStarted } from '../../schema/guest.ts';
import type { ComputerDriver, WatchHandle } from '../drivers/driver.ts';

export class WatchRelay {
  private readonly watches = new Map<string, Promise<WatchHandle | null>>();
  private readonly driver: ComputerDriver;
  private readonly computerId: string;
  private readonly send: (m: ComputerAgentMessage) => boolean;

  constructor(driver: ComputerDriver, computerId: string, send: (m: ComputerAgentMessage) => boolean) {
    this.driver = driver;
    this.computerId = computerId;
    this.send = send;
  }

  /** Starts a watch; one with the same id is replaced (the object asks again after a reconnect). */
  async start(watchId: string, producers: WatchProducers): Promise<WatchStarted> {
    await this.stop(watchId);
    const started = this.driver.watch(this.computerId, watchId, producers, (events) => {
      this.send({ type: 'watch.events', watch_id: watchId, events });
    });
    this.watches.set(watchId, started.catch(() => null));
    const handle = await started.catch((err: unknown) => {
      this.watches.delete(watchId);
      throw err;
    });
    return { unavailable: handle.unavailable };
  }

  async stop(watchId: string): Promise<Record<string, never>> {
    const handle = await this.watches.get(watchId);
    this.watches.delete(watchId);
    await handle?.stop();
    return {};
  }

  /** The computer stopped: its watches ended with its guest. */
  clear(): void {
    this.watches.clear();
  }
}
