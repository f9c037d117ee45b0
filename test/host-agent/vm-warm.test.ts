/**
 * Warm images: the first computer of a shape boots, and a machine of that
 * shape is then booted once and saved; later computers of the shape start
 * from its memory around a copy of its disk, each with an identity of its own
 * (hostname, clock, kernel randomness), and fall back to booting when the
 * image cannot be loaded.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { imagesDir, vmPathsIn } from '../../host-agent/drivers/vm/paths.ts';
import { readState, writeState } from '../../host-agent/drivers/vm/qemu.ts';
import { readMemoryRecord } from '../../host-agent/drivers/vm/memory-image.ts';
import { processStartTime } from '../../host-agent/drivers/sandbox/launch.ts';
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

  it('a warm machine still being built ends when its driver closes', async () => {
    const other = newVmDriver();
    await prepareVms(other);
    let owner = other;
    const mine = new Computers(() => owner);
    const images = imagesDir(other.dataDirectory);
    // A shape no other test uses, and no warm image of it (an earlier run may have left one): its
    // first computer boots, and its warm machine starts to build while the computer starts.
    const shape = { ...VM, memory_mb: 1152 };
    for (const f of fs.readdirSync(images)) {
      if (f.startsWith('warm-') && readMemoryRecord(vmPathsIn(path.join(images, f)))?.memory_mb === shape.memory_mb) fs.rmSync(path.join(images, f), { recursive: true, force: true });
    }
    const before = new Set(fs.readdirSync(images));
    let createdAt = 0;
    const watch = (async () => {
      while (!createdAt || Date.now() < createdAt + 10_000) {
        for (const b of fs.readdirSync(images)) {
          if (!b.startsWith(`.build-${process.pid}-`) || !b.includes('warm-') || before.has(b)) continue;
          const st = readState(vmPathsIn(path.join(images, b)));
          if (st) return st;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      return null;
    })();
    await mine.create({ ...shape, name: 'Warm Closing' });
    createdAt = Date.now();
    const state = await watch;
    expect(state, 'a warm build with a running VM').not.toBeNull();
    // The build boots, waits for the guest to be ready, then saves: it is still running now.
    expect(processStartTime(state!.pid), 'the warm machine is still being built').toBe(state!.start_time);
    // At once, while the build is far from done (it boots, waits for the guest, then saves).
    await other.close();
    const gone = async (pid: number, start: string | null | undefined) => {
      for (let i = 0; i < 20 && processStartTime(pid) === start; i++) await new Promise((r) => setTimeout(r, 100));
      return processStartTime(pid) !== start;
    };
    const ended = [await gone(state!.pid, state!.start_time), await gone(state!.pasta_pid!, state!.pasta_start_time)];
    owner = driver; // the computers outlive the closed driver; this file's driver removes them
    await mine.destroyAll();
    expect(ended).toEqual([true, true]);
  });

  it('a new driver ends and removes a warm build an agent that died left running', async () => {
    // Stand-ins: a build directory named after a process that is gone, recording a live process as its VM.
    const dead = spawnSync('true').pid!;
    const dir = path.join(imagesDir(driver.dataDirectory), `.build-${dead}-00000000-warm-abandoned`);
    fs.mkdirSync(dir, { recursive: true });
    const vm = spawn('sleep', ['300'], { stdio: 'ignore' });
    const start = processStartTime(vm.pid!);
    writeState(vmPathsIn(dir), { pid: vm.pid!, start_time: start!, passt_pid: null, passt_start_time: null, accel: 'tcg', vcpus: 1, memory_mb: 1024, booted_at: new Date().toISOString(), boot_id: 'x', argv: [] });
    const exited = new Promise((r) => vm.once('exit', r));
    const next = newVmDriver();
    try {
      expect(await Promise.race([exited.then(() => 'ended'), new Promise((r) => setTimeout(() => r('still running'), 10_000))])).toBe('ended');
      expect(fs.existsSync(dir)).toBe(false);
    } finally {
      vm.kill('SIGKILL');
      await next.close();
    }
  });
});
