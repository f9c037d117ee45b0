/**
 * Watches inside a real computer (guest ops watch/unwatch through the
 * driver): file events from inotify, process events from /proc, idle events,
 * and a storm of changes cut into bounded batches.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { ComputerEvent, WatchProducers } from '../../schema/guest.ts';
import type { WatchHandle } from '../../host-agent/drivers/driver.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { Computers, newDriver, prepareTemplate } from './sandbox-fixture.ts';

let driver: SandboxDriver;
let computers: Computers;
let spec: ComputerSpec;
let n = 0;

const run = async (command: string) => (await driver.exec(spec.id, { command, timeout_s: 60, max_output_bytes: 1 << 20 })).output;

/** A watch that collects its events. */
async function watch(producers: WatchProducers): Promise<{ events: ComputerEvent[]; handle: WatchHandle; until(pred: (e: ComputerEvent) => boolean, ms?: number): Promise<ComputerEvent> }> {
  const events: ComputerEvent[] = [];
  const handle = await driver.watch(spec.id, `w${++n}`, producers, (batch) => events.push(...batch));
  return {
    events,
    handle,
    async until(pred, ms = 15_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const hit = events.find(pred);
        if (hit) return hit;
        if (Date.now() > deadline) throw new Error(`no such event within ${ms} ms; got ${JSON.stringify(events.slice(-20))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ name: 'Watch Box' });
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('watches inside a computer', () => {
  it('file events under the watched paths, in order, new directories included; nothing from elsewhere', async () => {
    await run('mkdir -p /workspace/w');
    const w = await watch({ file: { paths: ['/workspace/w'] } });
    expect(w.handle.unavailable).toEqual([]);
    await run('mkdir /workspace/w/d && echo one > /workspace/w/d/f && echo two >> /workspace/w/d/f && rm /workspace/w/d/f && echo elsewhere > /tmp/x');
    await w.until((e) => e.type === 'file.deleted' && e.data.path === '/workspace/w/d/f');
    const seen = w.events.map((e) => `${e.type} ${e.data.path}`);
    expect(seen[0]).toBe('file.created /workspace/w/d');
    expect(seen).toContain('file.created /workspace/w/d/f');
    expect(seen.indexOf('file.created /workspace/w/d/f')).toBeLessThan(seen.indexOf('file.modified /workspace/w/d/f'));
    expect(seen.at(-1)).toBe('file.deleted /workspace/w/d/f');
    expect(seen.some((s) => s.includes('/tmp'))).toBe(false);
    expect(w.events[0].timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(w.events[0].data.is_dir).toBe(true);
    await w.handle.stop();
    const before = w.events.length;
    await run('touch /workspace/w/after-stop');
    await new Promise((r) => setTimeout(r, 300));
    expect(w.events.length).toBe(before);
  });

  it('a directory made with its contents before the watch reached it still reports what is inside', async () => {
    await run('mkdir -p /workspace/deep');
    const w = await watch({ file: { paths: ['/workspace/deep'] } });
    await run('mkdir -p /workspace/deep/a/b/c && touch /workspace/deep/a/b/c/leaf');
    await w.until((e) => e.type === 'file.created' && e.data.path === '/workspace/deep/a/b/c/leaf');
    await w.handle.stop();
  });

  it('process events: started with its command line, exited with its exit code', async () => {
    const w = await watch({ process: {} });
    await new Promise((r) => setTimeout(r, 400)); // the first scan is the baseline
    await run('sleep 1.5; exit 3');
    const started = await w.until((e) => e.type === 'process.started' && e.data.cmd === 'sleep 1.5');
    expect(started.data).toMatchObject({ uid: 1000 });
    const exited = await w.until((e) => e.type === 'process.exited' && e.data.pid === started.data.pid);
    expect(exited.data.cmd).toBe('sleep 1.5');
    const shell = await w.until((e) => e.type === 'process.exited' && String(e.data.cmd).startsWith('/bin/bash -c sleep 1.5'));
    expect(shell.data.exit_code).toBe(3);
    await w.handle.stop();
  });

  it('idle events: started after the threshold with nothing going on, ended by work', async () => {
    const w = await watch({ idle: { threshold_s: 1 } });
    const idle = await w.until((e) => e.type === 'idle.started');
    expect(idle.data.threshold_seconds).toBe(1);
    await run('true');
    const ended = await w.until((e) => e.type === 'idle.ended');
    expect(Number(ended.data.idle_seconds)).toBeGreaterThanOrEqual(1);
    // A busy process keeps it from going idle again.
    const busyFrom = w.events.length;
    void run('timeout 3 sh -c "while :; do :; done"');
    await new Promise((r) => setTimeout(r, 2500));
    expect(w.events.slice(busyFrom).filter((e) => e.type === 'idle.started')).toEqual([]);
    await w.handle.stop();
  });

  it('a storm of changes arrives in bounded batches, with a count of what was dropped', async () => {
    await run('mkdir -p /workspace/storm');
    const batches: number[] = [];
    const events: ComputerEvent[] = [];
    const handle = await driver.watch(spec.id, 'storm', { file: { paths: ['/workspace/storm'] } }, (b) => {
      batches.push(b.length);
      events.push(...b);
    });
    await run(`python3 -c "[open('/workspace/storm/f%d' % i, 'w').close() for i in range(10000)]"`);
    // Until the events stop coming.
    for (let last = -1; last !== events.length; ) {
      last = events.length;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(Math.max(...batches)).toBeLessThanOrEqual(201);
    const dropped = events.filter((e) => e.type === 'events.dropped').reduce((s, e) => s + Number(e.data.count), 0);
    const created = events.filter((e) => e.type === 'file.created').length;
    const modified = events.filter((e) => e.type === 'file.modified').length;
    // Each file is created and closed after writing (two events): each is sent or counted as dropped,
    // unless the kernel's own queue overflowed (and said so).
    if (!events.some((e) => e.type === 'file.overflow')) expect(created + modified + dropped).toBe(20000);
    expect(created).toBeGreaterThan(0);
    await handle.stop();
  });

  it('many writes to one file within a batch are one file.modified', async () => {
    await run('mkdir -p /workspace/busy');
    const w = await watch({ file: { paths: ['/workspace/busy'] } });
    await run(`python3 -c "
f = open('/workspace/busy/log', 'w')
for i in range(2000):
    f.write('line %d\\n' % i); f.flush()
f.close(); open('/workspace/busy/done', 'w').close()"`);
    await w.until((e) => e.type === 'file.created' && e.data.path === '/workspace/busy/done');
    const modified = w.events.filter((e) => e.type === 'file.modified' && e.data.path === '/workspace/busy/log');
    // 2000 writes (and a close) that take far less than 2000 batches: one event per batch at most.
    expect(modified.length).toBeGreaterThan(0);
    expect(modified.length).toBeLessThan(100);
    await w.handle.stop();
  });

  it('says which producers it could not have', async () => {
    const w = await watch({ file: { paths: ['/workspace/not-there', '/etc/hostname'] } });
    expect(w.handle.unavailable.map((u) => u.reason)).toEqual([
      '/workspace/not-there is not a directory; it is not watched',
      '/etc/hostname is not a directory; it is not watched',
    ]);
    await w.handle.stop();
  });
});
