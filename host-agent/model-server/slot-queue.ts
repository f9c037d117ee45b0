/**
 * A fixed set of slots handed out first come, first served. Past `maxQueue`
 * waiting requests a new one is refused at once (the server answers 503 with
 * Retry-After rather than letting a queue grow without bound); a waiter whose
 * client goes away leaves the queue.
 */
export class QueueFullError extends Error {}

export class SlotQueue<T> {
  private readonly free: T[];
  private readonly waiters: Array<{ resolve: (slot: T) => void; reject: (e: unknown) => void; signal: AbortSignal; onAbort: () => void }> = [];
  private readonly maxQueue: number;
  busy = 0;

  constructor(slots: T[], maxQueue: number) {
    this.free = [...slots];
    this.maxQueue = maxQueue;
  }

  get queued(): number {
    return this.waiters.length;
  }

  acquire(signal: AbortSignal): Promise<T> {
    signal.throwIfAborted();
    const slot = this.free.pop();
    if (slot !== undefined) {
      this.busy++;
      return Promise.resolve(slot);
    }
    if (this.waiters.length >= this.maxQueue) return Promise.reject(new QueueFullError(`all slots are busy and ${this.maxQueue} requests are waiting`));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiters.indexOf(waiter);
          if (i !== -1) this.waiters.splice(i, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(slot: T): void {
    const next = this.waiters.shift();
    if (next) {
      next.signal.removeEventListener('abort', next.onAbort);
      next.resolve(slot);
      return;
    }
    this.busy--;
    this.free.push(slot);
  }
}
