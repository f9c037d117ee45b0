import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import type { VmDriver } from '../../host-agent/drivers/vm/vm-driver.ts';
import { Qmp } from '../../host-agent/drivers/vm/qmp.ts';
import { Computers, VM, newVmDriver, pathsOf, prepareVms, shIn } from './vm-fixture.ts';

let driver: VmDriver;
let computers: Computers;
let spec: ComputerSpec;
const sh = (command: string, timeout_s = 120) => shIn(driver, spec.id)(command, timeout_s);

const alive = (pid: number) => fs.existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
/** What debugfs says about a path inside a stopped computer's disk image. */
const debugfs = (image: string, request: string) => execFileSync('debugfs', ['-R', request, image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });

beforeAll(async () => {
  driver = newVmDriver();
  await prepareVms(driver);
  computers = new Computers(() => driver);
  spec = await computers.create({ ...VM, name: 'Lifecycle Box', env: { GREETING: 'hello from the spec' } });
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

describe('a computer as a microVM', () => {
  it('runs its own kernel over the template root, as user, with the spec environment and hostname', async () => {
    // The guest makes a VM's processes `user` itself (processes.py): the groups too, as /etc/group says.
    const r = await sh('uname -r; hostname; echo "$GREETING"; id -un; pwd; jq -r .name /etc/hangar-template.json; sudo -n true && echo sudo-ok; [ "$(id -G)" = "$(id -G user)" ] && id -Gn | grep -qw sudo && echo groups-ok');
    expect(r.exit_code).toBe(0);
    const [kernel, ...rest] = r.output.trim().split('\n');
    expect(kernel).toMatch(/-cloud-amd64$/);
    expect(kernel).not.toBe(os.release());
    expect(rest).toEqual(['lifecycle-box', 'hello from the spec', 'user', '/workspace', 'miosa-desktop', 'sudo-ok', 'groups-ok']);
    expect(await driver.state(spec.id)).toBe('running');
    expect(await driver.list()).toContain(spec.id);
  });

  it('under emulation, programs start at fixed addresses on a CPU without fast string copies (qemu-args.ts); under KVM, as on any machine', async () => {
    const r = await sh('cat /proc/sys/kernel/randomize_va_space; grep -m1 "^flags" /proc/cpuinfo');
    const [aslr, flags] = r.output.trim().split('\n');
    const tcg = (await driver.accel()).accel === 'tcg';
    expect(aslr).toBe(tcg ? '0' : '2');
    if (tcg) expect(flags.split(/\s+/)).not.toContain('erms');
    // What the guest turned off, root inside turns back on.
    expect((await sh('sudo sysctl -qw kernel.randomize_va_space=2 && cat /proc/sys/kernel/randomize_va_space')).output).toBe('2\n');
  });

  it('stop powers it off cleanly (disk unmounted clean, QEMU and passt gone); its changes live in disk.img as an overlay upper dir', async () => {
    const w = await sh('echo kept > /home/user/kept.txt && sudo rm /etc/issue && sync && echo ok');
    expect(w.output).toBe('ok\n');
    const info = driver.vmInfo(spec.id)!;
    await driver.stop(spec.id);
    expect(await driver.state(spec.id)).toBe('stopped');
    expect(alive(info.pid)).toBe(false);
    expect(info.passt_pid && alive(info.passt_pid)).toBe(false);
    expect(info.pasta_pid && alive(info.pasta_pid)).toBe(false);
    const paths = pathsOf(driver, spec.id);
    expect(fs.readFileSync(paths.log, 'utf8')).toContain('hangar-vm: powering off');
    // Unmounted by the VM before it powered off, not merely journalled.
    expect(execFileSync('dumpe2fs', ['-h', paths.disk], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).toMatch(/^Filesystem state:\s+clean$/m);
    // The shared format: upper/ holds the change, a deletion is a 0:0 character device (an overlay whiteout).
    expect(debugfs(paths.disk, 'cat /upper/home/user/kept.txt')).toBe('kept\n');
    expect(debugfs(paths.disk, 'stat /upper/etc/issue')).toMatch(/Type: character special[\s\S]*Device major\/minor number: 00:00/);
    await driver.start(spec);
    const r = await sh('cat /home/user/kept.txt; test -e /etc/issue && echo issue-back || echo issue-gone');
    expect(r.output).toBe('kept\nissue-gone\n');
  });

  it('a VM that ignores the power-off is stopped hard, and its disk comes back', async () => {
    const paths = pathsOf(driver, spec.id);
    const { pid } = driver.vmInfo(spec.id)!;
    // A paused VM answers nothing: the clean path times out, then QEMU is told to quit.
    const qmp = await Qmp.connect(paths.qmpSocket);
    await qmp.execute('stop');
    qmp.close();
    await driver.stop(spec.id);
    expect(alive(pid)).toBe(false);
    expect(await driver.state(spec.id)).toBe('stopped');
    await driver.start(spec);
    expect((await sh('cat /home/user/kept.txt')).output).toBe('kept\n');
  });

  it('resize applies at the next boot: vCPUs and memory are the VM hardware', async () => {
    const bigger = { ...spec, vcpus: 2, memory_mb: 1536 };
    await driver.resize(bigger);
    expect((await sh('nproc')).output).toBe('1\n');
    await driver.stop(spec.id);
    await driver.start(bigger);
    const r = await sh("nproc; awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo");
    const [cpus, memMb] = r.output.trim().split('\n').map(Number);
    expect(cpus).toBe(2);
    expect(memMb).toBeGreaterThan(1536 * 0.85);
    expect(memMb).toBeLessThanOrEqual(1536);
    expect(driver.vmInfo(spec.id)).toMatchObject({ vcpus: 2, memory_mb: 1536 });
    spec = bigger;
  });

  it('metrics come from inside the guest: its memory and disk use, and a busy vCPU shows as busy', async () => {
    const idle = (await driver.metrics(spec.id))!;
    expect(idle.memory_bytes).toBeGreaterThan(10 << 20);
    expect(idle.memory_percent).toBeGreaterThan(0);
    expect(idle.memory_percent).toBeLessThan(100);
    // 100 MiB of zeros: holes in the image on the host, 100 MiB more in use on the disk inside.
    expect(idle.disk_bytes).toBeGreaterThan(0);
    await sh('dd if=/dev/zero of=/home/user/fill bs=1M count=100 2>/dev/null && sync && echo written', 120);
    const filled = (await driver.metrics(spec.id))!;
    expect(filled.disk_bytes! - idle.disk_bytes!).toBeGreaterThan(95 << 20);
    expect(filled.disk_percent).toBeGreaterThan(idle.disk_percent!);
    await sh('rm /home/user/fill && echo removed');
    // Both vCPUs spin for a while; the guest's own counters say so whatever the host's load.
    await sh('for i in 1 2; do timeout 20 sh -c "while :; do :; done" >/dev/null 2>&1 & done; echo started');
    await new Promise((r) => setTimeout(r, 1500));
    await driver.metrics(spec.id);
    await new Promise((r) => setTimeout(r, 2000));
    const busy = (await driver.metrics(spec.id))!;
    expect(busy.cpu_percent).toBeGreaterThan(60);
    await sh('pkill -f "while :" ; true');
  });

  it('a VM that ends on its own is reported with the reason, and starts again', async () => {
    const exits: Array<[string, string]> = [];
    driver.onExit((id, reason) => exits.push([id, reason]));
    // Power off at once from inside, as a crash would (no clean shutdown).
    await sh('sudo sh -c "echo o > /proc/sysrq-trigger" & sleep 1; echo never', 30).catch(() => undefined);
    await expect.poll(() => exits.find(([id]) => id === spec.id)?.[1], { timeout: 30_000 }).toMatch(/powered itself off/);
    expect(await driver.state(spec.id)).toBe('stopped');
    await driver.start(spec);
    expect((await sh('cat /home/user/kept.txt')).output).toBe('kept\n');
    const { pid } = driver.vmInfo(spec.id)!;
    process.kill(pid, 'SIGKILL');
    await expect.poll(() => exits.filter(([id]) => id === spec.id).length, { timeout: 30_000 }).toBe(2);
    expect(exits.at(-1)![1]).toMatch(/SIGKILL/);
    await driver.start(spec);
  });

  it('a new agent finds the running VM and talks to it again over the same channel', async () => {
    const before = driver.vmInfo(spec.id)!;
    await driver.close();
    driver = newVmDriver();
    expect(await driver.state(spec.id)).toBe('running');
    const r = await sh('echo still here; cat /home/user/kept.txt');
    expect(r.output).toBe('still here\nkept\n');
    expect(driver.vmInfo(spec.id)!.boot_id).toBe(before.boot_id);
  });

  // The guest runs on its own runtime from the read-only guest image (disk-images.ts, boot/guest).
  // test/e2e/guest-runtime.test.ts does this with apt-get, which downloads; this needs no network.
  it("the computer's own Python can go: exec answers without it, and again after a reboot", async () => {
    const removed = await sh('sudo -n rm -rf /usr/lib/python3* /usr/bin/python3*; command -v python3 || echo no-python; P=$(pgrep -o -x hangar-guest); sudo -n readlink "/proc/$P/exe"');
    expect(removed.output).toMatch(/^no-python\n\/run\/hangar-guest\/lib\/ld-linux[^\n]*\n$/);
    await driver.stop(spec.id);
    await driver.start(spec);
    const after = await sh('echo back; id -un; command -v python3 || echo still-no-python');
    expect(after).toMatchObject({ exit_code: 0, output: 'back\nuser\nstill-no-python\n' });
  });

  it('destroy removes the VM and its disk', async () => {
    const { pid, passt_pid, pasta_pid } = driver.vmInfo(spec.id)!;
    const paths = pathsOf(driver, spec.id);
    await driver.destroy(spec.id);
    expect(await driver.state(spec.id)).toBe('absent');
    expect(alive(pid)).toBe(false);
    expect(passt_pid && alive(passt_pid)).toBe(false);
    expect(pasta_pid && alive(pasta_pid)).toBe(false);
    expect(fs.existsSync(paths.dir)).toBe(false);
    expect(await driver.list()).not.toContain(spec.id);
  });
});
