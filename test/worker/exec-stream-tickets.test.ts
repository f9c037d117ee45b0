import { SELF } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BASE, expectError, expectJson } from './helpers.ts';
import { readSse } from '../e2e/sse.ts';
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

  it('DELETE on the stream URL cancels the command: TERM to its group, KILL after the grace, and viewers get the exit', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const t = await expectJson<Ticket>(await w.api(`/${computer.id}/exec/stream`, { method: 'POST', body: { command: 'sleep 100' } }), 202);
    const procId = (await peer.take('proc.start')).params.proc_id;
    const viewer = await SELF.fetch(`${BASE}${t.stream_url}`);

    const res = await SELF.fetch(`${BASE}${t.stream_url}`, { method: 'DELETE' });
    expect(res.status).toBe(204);
    expect(await peer.take('proc.signal')).toMatchObject({ proc_id: procId, signal: 'TERM' });
    // Still running after the grace (this agent ignores TERM): KILL follows.
    expect(await peer.take('proc.signal')).toMatchObject({ proc_id: procId, signal: 'KILL' });
    peer.exit(procId, 137, { signal: 9 });
    const events = await readSse(viewer);
    expect(events.at(-1)).toMatchObject({ event: 'exit' });
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ exit_code: 137 });

    // Cancelling what has ended is a 204 again, and signals nothing.
    expect((await SELF.fetch(`${BASE}${t.stream_url}`, { method: 'DELETE' })).status).toBe(204);
    await new Promise((r) => setTimeout(r, 50));
    expect(peer.requests.filter((r) => r.type === 'proc.signal')).toHaveLength(2);
  });

  it('a cancel needs the ticket of a command of that computer: others are 401 and signal nothing', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const other = await runningComputer(w);
    const t = await expectJson<Ticket>(await w.api(`/${computer.id}/exec/stream`, { method: 'POST', body: { command: 'sleep 100' } }), 202);
    await peer.take('proc.start');
    const ticket = encodeURIComponent(t.ticket);
    await expectError(await SELF.fetch(`${BASE}/api/v1/computers/${computer.id}/exec/stream/events?ticket=tkt_nope`, { method: 'DELETE' }), 401, 'UNAUTHORIZED');
    await expectError(await SELF.fetch(`${BASE}/api/v1/computers/${other.computer.id}/exec/stream/events?ticket=${ticket}`, { method: 'DELETE' }), 401, 'UNAUTHORIZED');
    await new Promise((r) => setTimeout(r, 50));
    expect(peer.requests.filter((r) => r.type === 'proc.signal')).toEqual([]);
    expect(other.peer.requests.filter((r) => r.type === 'proc.signal')).toEqual([]);
  });

  it('a cancel while the agent is away is a 502 AGENT_UNAVAILABLE, and the command still runs', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const t = await expectJson<Ticket>(await w.api(`/${computer.id}/exec/stream`, { method: 'POST', body: { command: 'sleep 100' } }), 202);
    const procId = (await peer.take('proc.start')).params.proc_id;
    await peer.drop();
    await expectError(await SELF.fetch(`${BASE}${t.stream_url}`, { method: 'DELETE' }), 502, 'AGENT_UNAVAILABLE');
    const back = await w.host.computer(computer.id, { state: 'running' });
    expect((await back.take('proc.attach')).proc_id).toBe(procId);
    expect((await SELF.fetch(`${BASE}${t.stream_url}`, { method: 'DELETE' })).status).toBe(204);
    expect(await back.take('proc.signal')).toMatchObject({ proc_id: procId, signal: 'TERM' });
  });
});
