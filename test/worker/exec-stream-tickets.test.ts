import { SELF } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BASE, expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { runningComputer, world } from './computer-fixtures.ts';

useAgentPeers();

interface Ticket {
  ticket: string;
  expires_at: number;
  stream_url: string;
}

/** Fakes only the clock (Date), which the ComputerObject reads in this same isolate. */
function advanceClock(ms: number): void {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(Date.now() + ms);
}

describe('exec stream tickets', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a ticket not used within 60 s is refused with 401; one issued later still works', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const start = () => w.api(`/${computer.id}/exec/stream`, { method: 'POST', body: { command: 'sleep 100' } });
    const stale = await expectJson<Ticket>(await start(), 202);

    advanceClock(61_000);
    await expectError(await SELF.fetch(`${BASE}${stale.stream_url}`), 401, 'UNAUTHORIZED');
    const fresh = await expectJson<Ticket>(await start(), 202);
    const res = await SELF.fetch(`${BASE}${fresh.stream_url}`);
    expect(res.status).toBe(200);
    await res.body?.cancel();
  });

  it('a ticket used in time stays good for reconnects after its 60 s', async () => {
    const w = await world();
    const { computer } = await runningComputer(w);
    const t = await expectJson<Ticket>(await w.api(`/${computer.id}/exec/stream`, { method: 'POST', body: { command: 'sleep 100' } }), 202);
    const first = await SELF.fetch(`${BASE}${t.stream_url}`);
    expect(first.status).toBe(200);
    await first.body?.cancel();

    advanceClock(61_000);
    const again = await SELF.fetch(`${BASE}${t.stream_url}`);
    expect(again.status).toBe(200);
    await again.body?.cancel();
  });
});
