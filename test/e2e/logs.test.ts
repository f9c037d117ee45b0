/** The system log of a real computer: its boot, its guest agent and what its host did, readable while it runs and after it stopped. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTenant, type Client } from './client.ts';
import { SseReader } from './sse.ts';

let api: Client;
let id: string;

beforeAll(async () => {
  api = await newTenant('logs');
  id = await api.runningComputer('logs');
});

afterAll(async () => {
  if (id) await api.del(`/computers/${id}`);
});

interface Logs {
  data: { lines: string[]; entries: { id: number; line: string }[] };
}

/** The log's lines once one matches `re` (the agent ships every quarter second). */
async function linesUntil(re: RegExp, ms = 30_000): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await api.get<Logs>(`/computers/${id}/logs?lines=1000`);
    expect(r.status).toBe(200);
    if (r.body.data.lines.some((l) => re.test(l))) return r.body.data.lines;
    if (Date.now() > deadline) throw new Error(`no line like ${re} within ${ms} ms; log: ${JSON.stringify(r.body.data.lines.slice(-20))}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

describe('the system log of a real computer', () => {
  it('shows its boot: the host provisioning it, the boot marker, the guest agent listening', async () => {
    // A sandbox's guest listens on a socket; a VM's serves its virtio-serial port. A new VM may
    // start from a saved machine's memory: its marker says resume, and its guest says whose it is.
    const listening = /hangar-guest: (listening|serving)/;
    const lines = await linesUntil(listening, 120_000);
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    expect(at(/hangar-agent: provision$/)).toBeGreaterThanOrEqual(0);
    expect(at(/hangar-agent: provision: \[disk\]/)).toBeGreaterThan(at(/hangar-agent: provision$/));
    expect(at(/^--- (boot|resume) /)).toBeGreaterThan(at(/hangar-agent: provision: \[disk\]/));
    expect(at(listening)).toBeGreaterThan(at(/^--- (boot|resume) /));
  });

  it('follows a stop and a start as a stream, and keeps the log while the computer is stopped', async () => {
    const res = await fetch(`${api.apiUrl}/computers/${id}/logs/stream?lines=0`, { headers: { authorization: `Bearer ${api.key}` } });
    expect(res.status).toBe(200);
    const reader = new SseReader(res);
    expect((await api.post(`/computers/${id}/stop`)).status).toBe(200);
    for (;;) {
      const m = await reader.next();
      if (m && JSON.parse(m.data).line.includes('stop: done; the computer is stopped')) break;
    }
    await reader.close();
    const stopped = await linesUntil(/stop: done; the computer is stopped/);
    expect(stopped.length).toBeGreaterThan(3);
    expect((await api.post(`/computers/${id}/start`)).status).toBe(200);
    const lines = await linesUntil(/start: done; the computer is running/);
    expect(lines.filter((l) => /^--- (boot|resume) /.test(l)).length).toBe(2);
  });
});
