import { describe, expect, it } from 'vitest';
import { expectError, expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { createComputer, runningComputer, world } from './computer-fixtures.ts';

useAgentPeers();

interface Metrics {
  cpu_percent: { ts: string; value: number }[];
  memory_percent: { ts: string; value: number }[];
  disk_percent: { ts: string; value: number }[];
  credits_per_hour: number;
}

const minute = (t: number) => Math.floor(t / 60_000) * 60_000;
const iso = (t: number) => new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');

describe('GET /computers/:id/metrics', () => {
  it('shows the samples the agent sent as per-minute points of the last hour', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const now = Date.now();
    const earlier = minute(now) - 10 * 60_000;
    peer.send({ type: 'metrics', ts: earlier + 5_000, cpu_percent: 12.4, memory_percent: 45.2, memory_bytes: 1.9e9 });
    peer.send({ type: 'metrics', ts: earlier + 35_000, cpu_percent: 20.6, memory_percent: 45.4, memory_bytes: 1.9e9 });
    peer.send({ type: 'metrics', ts: now, cpu_percent: 8.1, memory_percent: 50, memory_bytes: 2e9 });
    // Older than the window: kept for 24h and 7d, not shown for 1h.
    peer.send({ type: 'metrics', ts: now - 2 * 3_600_000, cpu_percent: 99, memory_percent: 99, memory_bytes: 4e9 });

    const read = async (window?: string) => expectJson<Metrics>(await w.api(`/${computer.id}/metrics${window ? `?window=${window}` : ''}`), 200);
    await expect.poll(async () => (await read('1h')).cpu_percent.length).toBe(2);
    const m = await read('1h');
    expect(m).toEqual({
      cpu_percent: [{ ts: iso(earlier), value: 16.5 }, { ts: iso(minute(now)), value: 8.1 }],
      memory_percent: [{ ts: iso(earlier), value: 45.3 }, { ts: iso(minute(now)), value: 50 }],
      // These samples came without disk use (an agent without disk quotas).
      disk_percent: [],
      credits_per_hour: 1,
    });
    expect(await read()).toEqual(m);
    expect((await read('24h')).cpu_percent.length).toBeGreaterThanOrEqual(3);
    expect((await read('7d')).cpu_percent.some((p) => p.value === 99)).toBe(true);
  });

  it('shows disk use as a share of the disk when the agent reports it', async () => {
    const w = await world();
    const { computer, peer } = await runningComputer(w);
    const at = minute(Date.now()) - 60_000;
    peer.send({ type: 'metrics', ts: at + 1000, cpu_percent: 1, memory_percent: 2, memory_bytes: 1e8, disk_bytes: 2e9, disk_percent: 10 });
    peer.send({ type: 'metrics', ts: at + 2000, cpu_percent: 1, memory_percent: 2, memory_bytes: 1e8, disk_bytes: 3e9, disk_percent: 15 });
    const read = async () => expectJson<Metrics>(await w.api(`/${computer.id}/metrics`), 200);
    await expect.poll(async () => (await read()).disk_percent.length).toBe(1);
    expect((await read()).disk_percent).toEqual([{ ts: iso(at), value: 12.5 }]);
  });

  it('a window other than 1h, 24h or 7d is a 400', async () => {
    const w = await world();
    const c = await createComputer(w);
    for (const window of ['2h', '1d', '']) {
      const err = await expectError(await w.api(`/${c.id}/metrics?window=${window}`), 400, 'VALIDATION_FAILED');
      expect(err.error.message).toMatch(/window/);
    }
  });

  it('credits_per_hour follows the size: 1, 2, 4', async () => {
    const w = await world();
    for (const [size, rate] of [['small', 1], ['medium', 2], ['large', 4]] as const) {
      const c = await createComputer(w, { size });
      expect((await expectJson<Metrics>(await w.api(`/${c.id}/metrics`), 200)).credits_per_hour, size).toBe(rate);
    }
  });

  it('a computer without samples has empty series', async () => {
    const w = await world();
    const c = await createComputer(w);
    expect(await expectJson<Metrics>(await w.api(`/${c.id}/metrics?window=1h`), 200)).toEqual({ cpu_percent: [], memory_percent: [], disk_percent: [], credits_per_hour: 1 });
  });
});
