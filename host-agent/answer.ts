/**
 * Answering the server's requests, on a computer socket or a host-mode host
 * socket alike: exactly one `result` per request id — the data, or the error
 * with the protocol's code (a DriverError's own, FAILED for anything else).
 */
import type { ComputerAgentMessage } from '../schema/protocol.ts';
import { DriverError } from './drivers/driver.ts';

type Send = (msg: ComputerAgentMessage) => boolean;

/**
 * Runs one request and sends its result; `failed` hears of unexpected
 * failures and of what a computer's own agent said (worth a log line; never
 * sent to the server).
 */
export async function answer(send: Send, id: string, run: () => Promise<unknown>, failed: (message: string) => void): Promise<void> {
  try {
    send({ type: 'result', id, ok: true, data: await run() });
  } catch (err) {
    const code = err instanceof DriverError ? err.code : 'FAILED';
    const message = err instanceof Error ? err.message : String(err);
    const detail = err instanceof DriverError && err.detail ? ` (the computer said: ${JSON.stringify(err.detail)})` : '';
    if (code === 'FAILED' || detail) failed(`${message}${detail}`);
    send({ type: 'result', id, ok: false, error: { code, message: message.slice(0, 4000) } });
  }
}

/** A request that failed validation is refused, when it has an id to answer. */
export function refuse(send: Send, raw: unknown, problem: string | undefined): void {
  const id = (raw as { id?: unknown } | null)?.id;
  if (typeof id === 'string' && id.length > 0 && id.length <= 64) {
    send({ type: 'result', id, ok: false, error: { code: 'BAD_REQUEST', message: `invalid request: ${problem}` } });
  }
}
