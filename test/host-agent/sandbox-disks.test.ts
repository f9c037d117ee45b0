/**
 * The sandbox driver's disks and user namespaces on the real thing: uid
 * ranges per computer, 0-based owners on disk, disk images that grow,
 * snapshots of running computers, and disks of the old layout converted.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ComputerSpec } from '../../schema/protocol.ts';
import { SandboxDriver } from '../../host-agent/drivers/sandbox.ts';
import { DEVICES_ALLOWED, detectCgroups } from '../../host-agent/drivers/sandbox/cgroups.ts';
import { readMeta } from '../../host-agent/drivers/sandbox/disk.ts';
import { readState } from '../../host-agent/drivers/sandbox/launch.ts';
import { computerPaths } from '../../host-agent/drivers/sandbox/paths.ts';
import { ensureGuestRuntime } from '../../host-agent/guest/runtime.ts';
import { Computers, DATA_DIR, newDriver, prepareTemplate } from './sandbox-fixture.ts';

let driver: SandboxDriver;
let computers: Computers;

const sh = (id: string, command: string, user?: 'root') =>
  driver.exec(id, { command: user === 'root' ? `sudo -n sh -c '${command.replace(/'/g, `'\\''`)}'` : command, timeout_s: 60, max_output_bytes: 1 << 20 });
const paths = (id: string) => computerPaths(fs.realpathSync(DATA_DIR), id);
const GiB = 1024 ** 3;

beforeAll(async () => {
  driver = newDriver();
  await prepareTemplate(driver);
  computers = new Computers(() => driver);
});

afterAll(async () => {
  await computers?.destroyAll();
  await driver?.close();
});

/** What debugfs says about a path inside a stopped computer's disk image (its upper layer). */
function onDisk(id: string, file: string): string {
  return execFileSync('debugfs', ['-R', `stat /upper${file}`, paths(id).image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

describe('user namespaces, devices and disks', () => {
  it('on cgroup v1, the computer\'s processes sit in a devices cgroup that allows only the harmless devices', async (ctx) => {
    const layout = detectCgroups();
    if (layout.version !== 1 || !layout.devices) ctx.skip(); // v2: no devices controller (see cgroups.ts)
    const spec = await computers.create();
    const dir = path.join((layout as { devices: string }).devices, 'hangar', spec.id);
    expect(fs.readFileSync(path.join(dir, 'devices.list'), 'utf8').trim().split('\n').sort()).toEqual([...DEVICES_ALLOWED].sort());
    const guest = Number(execFileSync('pgrep', ['-P', String(readState(paths(spec.id))!.ns_pid)], { encoding: 'utf8' }).trim());
    expect(fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').map(Number)).toContain(guest);
  });

  it('each computer runs in a uid range of its own, held while it runs; its disk keeps 0-based owners', async () => {
    const a = await computers.create();
    const b = await computers.create();
    const [sa, sb] = [readState(paths(a.id))!, readState(paths(b.id))!];
    expect(sa.uid_base).toBeGreaterThanOrEqual(0x70000000);
    expect(sb.uid_base).not.toBe(sa.uid_base);
    expect(Math.abs(sa.uid_base! - sb.uid_base!) % 65536).toBe(0);
    expect(fs.readFileSync(`/proc/${sa.ns_pid}/uid_map`, 'utf8').trim().split(/\s+/)).toEqual(['0', String(sa.uid_base), '65536']);
    // Inside, root is 0 and the user 1000; on the host their processes run as the range's ids.
    expect((await sh(a.id, 'id -u; sudo -n id -u; echo x > /workspace/mine')).output).toBe('1000\n0\n');
    const hostUids = execFileSync('ps', ['-o', 'uid=', '--ppid', String(sa.ns_pid)], { encoding: 'utf8' }).trim();
    expect(Number(hostUids)).toBe(sa.uid_base); // the guest, root inside

    const slot = (base: number) => `/run/hangar/uid-ranges/${(base - 0x70000000) / 65536}.lock`;
    const locked = (file: string) => spawnSync('flock', ['-n', file, 'true']).status !== 0;
    expect(locked(slot(sa.uid_base!))).toBe(true);
    await driver.stop(a.id);
    expect(locked(slot(sa.uid_base!))).toBe(false); // free for the next computer
    expect(onDisk(a.id, '/workspace/mine')).toMatch(/User:\s+1000\s+Group:\s+1000/);
  });

  it('a disk grows to a larger disk_gb at the next start and keeps its files; df inside shows the size', async () => {
    const spec = await computers.create({ disk_gb: 1 });
    await sh(spec.id, 'echo kept > /workspace/kept');
    const size = async () => Number((await sh(spec.id, 'df -B1 --output=size / | tail -1')).output);
    expect(await size()).toBeLessThanOrEqual(1 * GiB);
    await driver.stop(spec.id);
    await driver.start({ ...spec, disk_gb: 2 });
    expect(await size()).toBeGreaterThan(1.5 * GiB);
    expect((await sh(spec.id, 'cat /workspace/kept')).output).toBe('kept\n');
    expect(readMeta(paths(spec.id))!.disk_gb).toBe(2);
    // A smaller disk_gb later never shrinks it.
    await driver.stop(spec.id);
    await driver.start({ ...spec, disk_gb: 1 });
    expect(await size()).toBeGreaterThan(1.5 * GiB);
  });

  it("a clone copies no empty space and rewrites no data: its image is as sparse as its source's and shares its written blocks", async () => {
    const source = await computers.create({ disk_gb: 2 });
    const written = await sh(source.id, 'head -c 48M /dev/urandom > /workspace/data && sync && sha256sum < /workspace/data');
    expect(written.exit_code).toBe(0);
    const clone = await computers.create({ disk_gb: 2 }, source.id);
    const image = fs.statSync(paths(clone.id).image);
    expect(image.size).toBe(fs.statSync(paths(source.id).image).size);
    expect(image.size).toBeGreaterThanOrEqual(2 * GiB);
    // Allocated: the data and the file system's own, far from the 2 GiB a full copy would write.
    expect(image.blocks * 512).toBeLessThan(0.5 * GiB);
    // Its extents are the source's (a reflink), not copies of them.
    const extents = execFileSync('filefrag', ['-v', paths(clone.id).image], { encoding: 'utf8' });
    expect(extents).toMatch(/shared/);
    expect((await sh(clone.id, 'sha256sum < /workspace/data')).output).toBe(written.output);
  });

  it('a disk moving to another host travels sparse and lands sparse: the archive is about what was written, not the quota', async () => {
    const source = await computers.create({ disk_gb: 2 });
    const written = await sh(source.id, 'head -c 48M /dev/urandom > /workspace/data && sync && sha256sum < /workspace/data');
    expect(written.exit_code).toBe(0);
    await driver.stop(source.id);
    const exported = await driver.exportDisk(source.id);
    let archived = 0;
    const pieces: Buffer[] = [];
    exported.stream.on('data', (d: Buffer) => ((archived += d.length), pieces.push(d)));
    await exported.done;
    // The 48 MiB and the file system's own blocks; a copy of the image would be its 2 GiB.
    expect(archived).toBeGreaterThan(48 << 20);
    expect(archived).toBeLessThan(0.25 * GiB);
    // Its other host (here the same driver, once the disk has left it).
    await driver.destroy(source.id);
    const target = await driver.importDisk(source, () => undefined);
    for (const piece of pieces) await target.write(piece);
    await target.commit();
    const image = fs.statSync(paths(source.id).image);
    expect(image.size).toBeGreaterThanOrEqual(2 * GiB);
    expect(image.blocks * 512).toBeLessThan(0.25 * GiB);
    await driver.start(source);
    expect((await sh(source.id, 'sha256sum < /workspace/data')).output).toBe(written.output);
  });

  it('a full disk still boots: the computer answers and can free space', async () => {
    const spec = await computers.create({ disk_gb: 1 });
    const fill = await sh(spec.id, 'dd if=/dev/zero of=/workspace/fill bs=4M 2>&1 | grep -c "No space left"; df -B1 --output=avail / | tail -1');
    expect(fill.output.split('\n')[0]).toBe('1');
    expect(Number(fill.output.split('\n')[1])).toBeLessThan(64 << 20);
    await driver.stop(spec.id);
    await driver.start(spec);
    expect((await sh(spec.id, 'rm /workspace/fill && echo freed; hostname')).output).toBe('freed\ntest-computer\n');
  });

  it("a running computer's disk snapshots consistently while it writes, and a snapshot restores", async () => {
    const spec = await computers.create();
    await sh(spec.id, 'echo before > /workspace/state');
    // A writer that keeps going: the snapshot must not stop it for good.
    await sh(spec.id, `nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /workspace/counter.tmp; mv /workspace/counter.tmp /workspace/counter; sleep 0.05; done' >/dev/null 2>&1 &`);
    const counter = async () => Number((await sh(spec.id, 'cat /workspace/counter 2>/dev/null || echo 0')).output);
    for (let i = 0; i < 100 && (await counter()) === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const name = `snap-${spec.id.slice(0, 8)}`;
    await driver.snapshotDisk(spec.id, name);
    const image = path.join(fs.realpathSync(DATA_DIR), 'disks', 'snapshots', `${name}.img`);
    // Consistent: a clean file system, as after an orderly unmount (e2fsck exits 0).
    expect(spawnSync('e2fsck', ['-f', '-n', image]).status).toBe(0);
    const first = await counter();
    await new Promise((r) => setTimeout(r, 500));
    expect(await counter()).toBeGreaterThan(first); // thawed: it writes on

    await sh(spec.id, 'echo after > /workspace/state; sudo -n rm /etc/hostname.bak 2>/dev/null; true');
    await expect(driver.restoreDisk(spec.id, name)).rejects.toThrow(/running/);
    await driver.stop(spec.id);
    await driver.restoreDisk(spec.id, name);
    await driver.start(spec);
    expect((await sh(spec.id, 'cat /workspace/state')).output).toBe('before\n');
    await driver.deleteSnapshot(name);
    expect(fs.existsSync(image)).toBe(false);
  });

  it('a disk of the old layout (a plain upper dir with trusted.overlay marks) is converted at its next boot: files, owners, deletions and opaque dirs as they were', async () => {
    const spec = await computers.create();
    await driver.stop(spec.id);
    const p = paths(spec.id);
    fs.rmSync(p.image);
    // Build what the old driver left: host-root-written overlay state on the host file system.
    const runtime = await ensureGuestRuntime(readMeta(p)!.template_dir, () => undefined);
    const [python, ...args] = runtime.programArgv(runtime.manifest.python);
    const script = `
import os, stat, sys
upper = sys.argv[1]
os.makedirs(f"{upper}/workspace", exist_ok=True)
os.chown(f"{upper}/workspace", 1000, 1000)
with open(f"{upper}/workspace/old.txt", "w") as f:
    f.write("from the old layout\\n")
os.chown(f"{upper}/workspace/old.txt", 1000, 1000)
os.makedirs(f"{upper}/etc", exist_ok=True)
os.mknod(f"{upper}/etc/motd", stat.S_IFCHR | 0o000, os.makedev(0, 0))
os.makedirs(f"{upper}/usr/share/doc", exist_ok=True)
os.setxattr(f"{upper}/usr/share/doc", "trusted.overlay.opaque", b"y")
open(f"{upper}/usr/share/doc/only-this", "w").close()
`;
    fs.mkdirSync(p.upper);
    fs.mkdirSync(p.work);
    execFileSync(python, [...args, '-I', '-S', '-c', script, p.upper]);

    await driver.start(spec);
    expect(fs.existsSync(p.image)).toBe(true);
    expect(fs.existsSync(p.upper)).toBe(false);
    const r = await sh(spec.id, 'cat /workspace/old.txt; stat -c %U /workspace/old.txt; test -e /etc/motd && echo motd || echo no-motd; ls -A /usr/share/doc');
    expect(r.output).toBe('from the old layout\nuser\nno-motd\nonly-this\n');
    // And it is an ordinary disk now: deleting and writing work through the new overlay.
    expect((await sh(spec.id, 'rm -rf /usr/share/doc && mkdir /usr/share/doc && echo ok', 'root')).output).toBe('ok\n');
  });
});
