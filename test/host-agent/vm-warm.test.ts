/**
 * Warm images: the first computer of a shape boots, and a machine of that
 * shape is then booted once and saved; later computers of the shape start
 * from its memory around a copy of its disk, each with an identity of its own
 * (hostname, clock, kernel randomness), and fall back to booting when the
 * image cannot be loaded.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { imagesDir } from '../../host-agent/drivers/vm/paths.ts';
import { Computers, VM, newVmDriver, pathsOf, prepareVms, shIn } from './vm-fixture.ts';

let driver: VmDriver;
let computers: Computers;
/** A shape no other test file uses, so this file sees its warm image made. */
const SHAPE: Partial<ComputerSpec> = { ...VM, memory_mb: 1280 };

const warmImages = () => new Set(fs.readdirSync(imagesDir(driver.dataDirectory)).filter((f) => f.startsWith('warm-')));

beforeAll(async () => {
  driver = newVmDriver();
  await prepareVms(driver);
  computers = new Computers(() => driver);
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('computers from a warm image', () => {
  it('after a first computer of a shape boots, the next ones start from saved memory, each its own machine', async () => {
    const before = warmImages();
    const first = await computers.create({ ...SHAPE, name: 'Warm First' });
    // Either it booted (and the image of its shape is being made now), or an earlier run made it.
    const dir = await driver.warmImageDir(first.id);
    expect(driver.vmInfo(first.id)?.resumed).toBe(before.has(path.basename(dir)) ? true : undefined);
    await expect.poll(() => fs.existsSync(dir), { timeout: 240_000, interval: 1000 }).toBe(true);

    const a = await computers.create({ ...SHAPE, name: 'Warm Alpha', env: { WHO: 'alpha' } });
    const b = await computers.create({ ...SHAPE, name: 'Warm Beta', env: { WHO: 'beta' } });
    for (const [spec, name, who] of [[a, 'warm-alpha', 'alpha'], [b, 'warm-beta', 'beta']] as const) {
      expect(driver.vmInfo(spec.id)?.resumed).toBe(true);
      const r = await shIn(driver, spec.id)('hostname; cat /etc/hostname; grep -c "[[:space:]]$(hostname)$" /etc/hosts; echo $WHO; date +%s');
      const [h, etc, hosts, env, clock] = r.output.trim().split('\n');
      expect([h, etc, hosts, env]).toEqual([name, name, '1', who]);
      expect(Math.abs(Number(clock) - Date.now() / 1000)).toBeLessThan(10);
    }
    // Copies of one memory, each reseeded from the host: their kernels draw different bytes.
    const draw = async (spec: ComputerSpec) => (await shIn(driver, spec.id)('head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"')).output;
    expect(await draw(a)).not.toBe(await draw(b));
    // Their disks are their own.
    await shIn(driver, a.id)('echo only-alpha > /home/user/mine');
    expect((await shIn(driver, b.id)('test -e /home/user/mine && echo shared || echo separate')).output).toBe('separate\n');
    // And they stop and start like any other computer.
    await driver.stop(a.id);
    await driver.start(a);
    expect((await shIn(driver, a.id)('cat /home/user/mine; hostname')).output).toBe('only-alpha\nwarm-alpha\n');
  });

  it('a warm image that cannot be loaded gives way to a boot from the same disk', async () => {
    const probe = await computers.create({ ...SHAPE, name: 'Warm Probe' });
    const dir = await driver.warmImageDir(probe.id);
    const image = path.join(dir, 'memory.state');
    const saved = fs.readFileSync(image);
    try {
      const fd = fs.openSync(image, 'r+');
      fs.writeSync(fd, Buffer.alloc(1 << 20, 0x5a), 0, 1 << 20, 4096);
      fs.closeSync(fd);
      const spec = await computers.create({ ...SHAPE, name: 'Warm Fallback' });
      expect(driver.vmInfo(spec.id)?.resumed).toBeUndefined();
      expect((await shIn(driver, spec.id)('hostname')).output).toBe('warm-fallback\n');
      expect(fs.readFileSync(pathsOf(driver, spec.id).log, 'utf8')).toContain('the warm image could not be used');
    } finally {
      fs.writeFileSync(image, saved);
    }
  });
});
