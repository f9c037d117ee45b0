/**
 * Work the agent starts and does not wait for (answering a message, saying
 * hello after a reconnect). Its failure is logged and ends there: a promise
 * that rejects with nobody listening would end the whole agent, and with it
 * every computer's connection, over one request.
 */
import type { Logger } from './log.ts';

export function background(log: Logger, what: string, work: Promise<unknown>): void {
  work.catch((err: unknown) => log(`${what} failed: ${err instanceof Error ? err.message : String(err)}`));
}
