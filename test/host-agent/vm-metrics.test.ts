/**
 * A VM's metrics come from inside the guest; when the guest cannot answer
 * (its control loop is gone, or the machine is wedged), the QEMU process
 * stands in: its own CPU time per vCPU and its resident memory. Here the
 * "QEMU process" is a real busy process and the guest a control channel that
 * never answers: no VM is needed to see the fallback at work.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VmMeter, processSample } from '../../host-agent/drivers/vm/metrics.ts';
import type { VmSession } from '../../host-agent/drivers/vm/session.ts';

let busy: ChildProcess;

beforeAll(() => {
  busy = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
});

afterAll(() => {
  busy?.kill('SIGKILL');
});

/** A running VM as the meter sees it, whose guest does not answer. */
function silentVm(pid: number, asked: string[]): VmSession {
  return {
    id: 'silent',
    state: { pid, vcpus: 1, memory_mb: 64 },
    control: {
      request: async (line: string) => {
        asked.push(line);
        throw new Error('the guest did not answer');
      },
    },
  } as unknown as VmSession;
}

describe('VM metrics when the guest cannot answer', () => {
  it("are the QEMU process's own CPU time and resident memory", async () => {
    const asked: string[] = [];
    const session = silentVm(busy.pid!, asked);
    const meter = new VmMeter();
    // A busy loop uses CPU as soon as it is scheduled: some sample sees it.
    await expect.poll(async () => (await meter.measure(session)).cpu_percent, { timeout: 60_000, interval: 300 }).toBeGreaterThan(0);
    const m = await meter.measure(session);
    expect(asked[0]).toBe('stat'); // the guest was asked first
    const rss = processSample(busy.pid!).rssBytes;
    expect(rss).toBeGreaterThan(0);
    // sh's resident set hardly moves while it loops.
    expect(m.memory_bytes).toBeGreaterThan(rss / 2);
    expect(m.memory_bytes).toBeLessThan(rss * 2);
    expect(m.memory_percent).toBeCloseTo((m.memory_bytes / (64 * 1024 * 1024)) * 100, 0);
    // Disk use can only come from inside: without an answer it is left out, never a made-up 0.
    expect(asked).toContain('disk');
    expect(m).not.toHaveProperty('disk_bytes');
    expect(m).not.toHaveProperty('disk_percent');
  });
});

/** A VM whose guest answers `stat` at once and `disk` only when the test says. */
function slowDiskVm(asked: string[]) {
  const answers: ((words: string[]) => void)[] = [];
  let ticks = 0;
  const session = {
    id: 'slow-disk',
    state: { pid: process.pid, vcpus: 1, memory_mb: 64 },
    control: {
      request: (line: string) => {
        asked.push(line);
        if (line === 'disk') return new Promise<string[]>((resolve) => answers.push(resolve));
        ticks += 100;
        return Promise.resolve(['cpu', String(ticks), '0', '0', String(ticks), '0', '0', '0', '0', 'mem', '65536', '32768']);
      },
    },
  } as unknown as VmSession;
  return { session, answerDisk: (words: string[]) => answers.shift()!(words) };
}

describe('VM metrics when the guest is slow to count its disk', () => {
  it('it has one disk request at a time: samples meanwhile leave disk use out and send no more; once answered, the next sample asks again', async () => {
    const asked: string[] = [];
    const { session, answerDisk } = slowDiskVm(asked);
    const meter = new VmMeter();
    // Two callers at once share one sample; a later sample finds the disk request still out.
    const [a, b] = await Promise.all([meter.measure(session), meter.measure(session)]);
    expect(a).toBe(b);
    const c = await meter.measure(session);
    for (const m of [a, c]) {
      expect(m.memory_bytes).toBe(32768 * 1024);
      expect(m).not.toHaveProperty('disk_bytes');
    }
    expect(asked.filter((l) => l === 'disk')).toHaveLength(1);
    answerDisk(['1000', '500']);
    await new Promise((r) => setImmediate(r));
    const next = meter.measure(session);
    // The next sample asks again, and takes the answer that comes within its time.
    await expect.poll(() => asked.filter((l) => l === 'disk').length).toBe(2);
    answerDisk(['1000', '250']);
    expect(await next).toMatchObject({ disk_bytes: 250 * 1024, disk_percent: 25 });
  });
});

