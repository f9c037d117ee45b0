/**
 * Stopping a VM with its memory kept (memory.state, QEMU's migration stream)
 * and resuming it: processes and their memory come back, the clock is the
 * host's again, the image is used once, a plain stop or a resize drops it,
 * and an image that cannot be loaded gives way to a normal boot.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { Computers, VM, newVmDriver, pathsOf, prepareVms, shIn } from './vm-fixture.ts';

let driver: VmDriver;
let computers: Computers;
let spec: ComputerSpec;
const sh = (command: string, timeout_s = 60) => shIn(driver, spec.id)(command, timeout_s);

beforeAll(async () => {
  driver = newVmDriver();
  await prepareVms(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ ...VM, name: 'Memory Box', env: { KEPT: 'env kept' } });
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('a VM stopped with its memory kept', () => {
  it('resumes where it was: the same processes with what they held in memory, the host clock, the environment', async () => {
    // A process that a boot would not bring back.
    await sh('nohup bash -c \'while :; do sleep 1; done\' >/dev/null 2>&1 & echo $! > /tmp/holder.pid');
    const before = (await sh('cat /tmp/holder.pid; cat /proc/$(cat /tmp/holder.pid)/stat | cut -d" " -f22')).output;
    const { boot_id } = driver.vmInfo(spec.id)!;
    await driver.suspend(spec.id);
    const paths = pathsOf(driver, spec.id);
    expect(fs.statSync(paths.memory).size).toBeGreaterThan(16 << 20);
    expect(await driver.state(spec.id)).toBe('stopped');
    await new Promise((r) => setTimeout(r, 3000));
    await driver.start(spec);
    expect(driver.vmInfo(spec.id)).toMatchObject({ boot_id, resumed: true });
    // The very process (same pid, same start time), still running.
    expect((await sh('cat /tmp/holder.pid; cat /proc/$(cat /tmp/holder.pid)/stat | cut -d" " -f22')).output).toBe(before);
    const clock = Number((await sh('date +%s')).output);
    expect(Math.abs(clock - Date.now() / 1000)).toBeLessThan(5);
    expect((await sh('echo $KEPT')).output).toBe('env kept\n');
    // Used once: the disk moves on from here.
    expect(fs.existsSync(paths.memory)).toBe(false);
  });

  it('a plain stop drops kept memory, and so does a resize: the next start boots', async () => {
    await driver.suspend(spec.id);
    await driver.stop(spec.id);
    expect(fs.existsSync(pathsOf(driver, spec.id).memory)).toBe(false);
    await driver.start(spec);
    expect(driver.vmInfo(spec.id)?.resumed).toBeUndefined();
    expect((await sh('test -e /tmp/holder.pid && kill -0 $(cat /tmp/holder.pid) 2>/dev/null && echo alive || echo gone')).output).toBe('gone\n');

    await driver.suspend(spec.id);
    spec = { ...spec, memory_mb: 1536 };
    await driver.resize(spec);
    expect(fs.existsSync(pathsOf(driver, spec.id).memory)).toBe(false);
    await driver.start(spec);
    expect(driver.vmInfo(spec.id)).toMatchObject({ memory_mb: 1536 });
  });

  it('an image that cannot be loaded gives way to a normal boot, the disk intact', async () => {
    await sh('echo on-disk > /home/user/kept.txt');
    await driver.suspend(spec.id);
    const paths = pathsOf(driver, spec.id);
    // Damage the image past its header: QEMU refuses to load it.
    const fd = fs.openSync(paths.memory, 'r+');
    fs.writeSync(fd, Buffer.alloc(1 << 20, 0xa5), 0, 1 << 20, 4096);
    fs.closeSync(fd);
    await driver.start(spec);
    expect(driver.vmInfo(spec.id)?.resumed).toBeUndefined();
    expect((await sh('cat /home/user/kept.txt')).output).toBe('on-disk\n');
    expect(fs.readFileSync(paths.log, 'utf8')).toContain('the memory image could not be resumed');
  });
});
