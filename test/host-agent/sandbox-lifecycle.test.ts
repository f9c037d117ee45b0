import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { readState } from '../../host-agent/drivers/sandbox/launch.ts';
import { computerPaths } from '../../host-agent/drivers/sandbox/paths.ts';
import { Computers, DATA_DIR, newDriver, prepareTemplate } from './sandbox-fixture.ts';
import { until } from '../until.ts';

let driver: SandboxDriver;
let computers: Computers;

const sh = (id: string, command: string, timeout_s = 30) =>
  driver.exec(id, { command, timeout_s, max_output_bytes: 1 << 20 });

/** Host pids whose command line contains `marker`. */
function hostPidsWith(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

const paths = (id: string) => computerPaths(fs.realpathSync(DATA_DIR), id);

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('sandbox lifecycle', () => {
  it('stop ends every process of the computer and start brings its disk back', async () => {
    const spec = await computers.create();
    const marker = `hangar-sleep-${randomUUID()}`;
    await sh(spec.id, `echo kept > /workspace/before-stop.txt; (exec -a ${marker} sleep 1000) >/dev/null 2>&1 &`);
    // The background subshell execs the marked sleep in its own time, possibly after the command has answered.
    const started = await until('the marked sleep to start', async () => {
      const pids = hostPidsWith(marker);
      return pids.length ? pids : null;
    });
    expect(started).toHaveLength(1);
    const launcher = readState(paths(spec.id))!.pid;

    await driver.stop(spec.id);
    expect(await driver.state(spec.id)).toBe('stopped');
    expect(hostPidsWith(marker)).toEqual([]);
    expect(fs.existsSync(`/proc/${launcher}`)).toBe(false);
    expect(driver.limits(spec.id)).toBeNull(); // cgroup removed
    await expect(sh(spec.id, 'true')).rejects.toMatchObject({ code: 'NOT_RUNNING' });
    await driver.stop(spec.id); // idempotent

    await driver.start(spec);
    expect(await driver.state(spec.id)).toBe('running');
    const r = await sh(spec.id, `cat /workspace/before-stop.txt; pgrep -f '[h]${marker.slice(1)}' || echo no-sleep`);
    expect(r.output).toBe('kept\nno-sleep\n');
  });

  it('start on a running computer changes nothing', async () => {
    const spec = await computers.create();
    const before = readState(paths(spec.id))!.pid;
    await driver.start(spec);
    expect(readState(paths(spec.id))!.pid).toBe(before);
  });

  it('clone copies the disk of a running computer, and the copies are independent', async () => {
    const source = await computers.create({ name: 'Source' });
    await sh(source.id, 'mkdir -p /workspace/proj && echo original > /workspace/proj/a.txt && sudo -n rm /etc/motd');
    const clone = await computers.create({ name: 'Clone' }, source.id);
    expect(await driver.state(source.id)).toBe('running');
    const r = await sh(clone.id, 'cat /workspace/proj/a.txt; test -e /etc/motd && echo motd-back || echo motd-gone; hostname');
    expect(r.output).toBe('original\nmotd-gone\nclone\n');
    await sh(clone.id, 'echo changed > /workspace/proj/a.txt');
    expect((await sh(source.id, 'cat /workspace/proj/a.txt')).output).toBe('original\n');
  });

  it('resize changes the cgroup limits of the running computer', async () => {
    const spec = await computers.create({ size: 'small', vcpus: 1, memory_mb: 4096 });
    expect(driver.limits(spec.id)).toMatchObject({ memoryBytes: 4096 * 2 ** 20, cpuQuotaUs: 100_000, cpuPeriodUs: 100_000 });
    await driver.resize({ ...spec, size: 'medium', vcpus: 2, memory_mb: 8192 });
    expect(driver.limits(spec.id)).toMatchObject({ memoryBytes: 8192 * 2 ** 20, cpuQuotaUs: 200_000 });
    expect((await sh(spec.id, 'echo still-running')).output).toBe('still-running\n');
  });

  it('enforces the memory limit: a process that exceeds it is killed, the computer lives on', async () => {
    const spec = await computers.create({ memory_mb: 128 });
    const r = await sh(spec.id, `python3 -c "b = bytearray(400 * 1024 * 1024); print('allocated')"`);
    expect(r.exit_code).toBe(137);
    expect(r.output).not.toContain('allocated');
    expect((await sh(spec.id, 'echo alive')).output).toBe('alive\n');
  });

  it('reports real CPU and memory use', async () => {
    const spec = await computers.create({ vcpus: 1 });
    await new Promise((r) => setTimeout(r, 300));
    const idle = (await driver.metrics(spec.id))!.cpu_percent;
    await sh(spec.id, `(timeout 30 sh -c 'while :; do :; done') >/dev/null 2>&1 &`);
    // How much of its vCPU a busy loop gets depends on what else the host runs: compare with idle.
    let busy = 0;
    for (let i = 0; i < 20 && busy <= Math.max(5, 2 * idle); i++) {
      await new Promise((r) => setTimeout(r, 300));
      busy = (await driver.metrics(spec.id))!.cpu_percent;
    }
    await sh(spec.id, 'pkill -f "while :" || true');
    const m = (await driver.metrics(spec.id))!;
    expect(busy).toBeGreaterThan(Math.max(5, 2 * idle));
    expect(busy).toBeLessThanOrEqual(110); // one vCPU's quota
    expect(m!.memory_bytes).toBeGreaterThan(1_000_000);
    expect(m!.memory_percent).toBeGreaterThan(0);
  });

  it('a new driver on the same data dir finds the running computer and execs in it', async () => {
    const spec = await computers.create();
    await sh(spec.id, 'echo from-first-agent > /workspace/f');
    await driver.close();
    driver = newDriver();
    expect(await driver.list()).toContain(spec.id);
    expect(await driver.state(spec.id)).toBe('running');
    expect((await sh(spec.id, 'cat /workspace/f')).output).toBe('from-first-agent\n');
  });

  it("refuses a guest socket that root inside redirected to another computer's guest", async () => {
    const a = await computers.create({ name: 'Attacker' });
    const b = await computers.create({ name: 'Victim' });
    // /run/hangar inside is the host's run dir of A: root there can plant a symlink the host would follow.
    const planted = await sh(a.id, `sudo -n ln -sf ${paths(b.id).socket} /run/hangar/guest.sock && echo planted`);
    expect(planted.output).toBe('planted\n');
    await driver.close();
    driver = newDriver(); // fresh connections, resolved through the planted link
    await expect(sh(a.id, 'hostname')).rejects.toMatchObject({ code: 'NOT_RUNNING' });
    expect((await sh(b.id, 'hostname')).output).toBe('victim\n');
  });

  it('onExit fires when a computer dies without being asked, and it can start again', async () => {
    const spec = await computers.create();
    const exited = new Promise<{ id: string; reason: string }>((resolve) => {
      driver.onExit((id, reason) => {
        if (id === spec.id) resolve({ id, reason });
      });
    });
    process.kill(readState(paths(spec.id))!.pid, 'SIGKILL');
    const event = await exited;
    expect(event.reason).toMatch(/init exited/);
    expect(await driver.state(spec.id)).toBe('stopped');
    await driver.start(spec);
    expect((await sh(spec.id, 'echo back')).output).toBe('back\n');
  });

  it('destroy removes the disk, the processes and the cgroups', async () => {
    const spec = await computers.create();
    const p = paths(spec.id);
    await driver.destroy(spec.id);
    expect(await driver.state(spec.id)).toBe('absent');
    expect(fs.existsSync(p.dir)).toBe(false);
    expect(driver.limits(spec.id)).toBeNull();
    expect(await driver.list()).not.toContain(spec.id);
    await driver.destroy(spec.id); // idempotent
    await expect(sh(spec.id, 'true')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
