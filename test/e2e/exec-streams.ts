/** Streaming exec as a program uses it: start a command, open its event stream, read what came. */
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { Client } from './client.ts';
import { readSse, type SseMessage } from './sse.ts';

export interface Ticket {
  ticket: string;
  expires_at: number;
  stream_url: string;
}

export interface OutputData {
  line: string;
  stream: 'stdout' | 'stderr';
}

export class Streams {
  readonly api: Client;
  readonly id: string;
  readonly origin: string;

  constructor(api: Client, id: string) {
    this.api = api;
    this.id = id;
    this.origin = new URL(api.apiUrl).origin;
  }

  /** POST …/exec/stream; a 202 with a ticket is expected. */
  async start(command: string, timeout?: number): Promise<Ticket> {
    const r = await this.api.post<Ticket>(`/computers/${this.id}/exec/stream`, { command, timeout });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    return r.body;
  }

  /** GET the ticket's stream_url as EventSource does, resuming after `lastEventId` when given. */
  open(t: Ticket, lastEventId?: string | null): Promise<Response> {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (lastEventId) headers['last-event-id'] = lastEventId;
    return fetch(this.origin + t.stream_url, { headers });
  }

  /** Every event of the ticket's command, from the start to the terminal event. */
  async all(t: Ticket): Promise<SseMessage[]> {
    const res = await this.open(t);
    expect(res.status).toBe(200);
    return readSse(res);
  }

  /** Runs a command through the plain exec route; exit 0 expected. */
  async sh(command: string): Promise<string> {
    const r = await this.api.exec(this.id, command, 60);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.exit_code, r.body.output).toBe(0);
    return r.body.output;
  }

  /** Polls `test <expr>` in the computer until it holds. */
  async until(testExpr: string, ms = 60_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = await this.api.exec(this.id, `test ${testExpr}`);
      if (r.status === 200 && r.body.exit_code === 0) return;
      if (Date.now() > deadline) throw new Error(`\`test ${testExpr}\` did not hold within ${ms} ms`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }
}

/** The data of output events, in order. */
export const outputs = (msgs: SseMessage[]): OutputData[] => msgs.filter((m) => m.event === 'output').map((m) => JSON.parse(m.data) as OutputData);

/** The stdout text a command printed, rebuilt from its output events. */
export const stdoutOf = (msgs: SseMessage[]): string =>
  outputs(msgs)
    .filter((o) => o.stream === 'stdout')
    .map((o) => o.line)
    .join('');

export const sha256 = (s: string | Uint8Array): string => createHash('sha256').update(s).digest('hex');

export { seeded } from './fuzz-cases.ts';

/** HANGAR_TEST_SEED when set (to replay a failure), otherwise a fresh one that failures print. */
export const testSeed = (): number => Number(process.env.HANGAR_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
