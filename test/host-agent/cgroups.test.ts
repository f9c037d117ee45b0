import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ComputerCgroup, detectCgroups } from '../../host-agent/drivers/sandbox/cgroups.ts';

// This machine has cgroup v1 (exercised for real by the sandbox tests). The v2
// code path is checked here against a directory laid out like a cgroup2 mount.
let tmp: string | undefined;
afterEach(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
});

function fakeV2(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cg2-'));
  tmp = dir;
  fs.writeFileSync(path.join(dir, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
  fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), '');
  const mountinfo = path.join(dir, 'mountinfo');
  fs.writeFileSync(mountinfo, `35 24 0:30 / ${dir} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n`);
  return mountinfo;
}

describe('cgroups', () => {
  it('detects the v1 controllers of this host', () => {
    const layout = detectCgroups();
    if (layout.version === 1) expect(layout.mounts.memory).toMatch(/memory/);
    else expect(fs.existsSync(path.join(layout.mount, 'cgroup.controllers'))).toBe(true);
  });

  it('prefers a cgroup2 mount with memory, cpu and pids when v1 has none', () => {
    const layout = detectCgroups(fakeV2());
    expect(layout).toEqual({ version: 2, mount: tmp });
  });

  it('writes v2 limits as memory.max, cpu.max and pids.max and reads usage from cpu.stat', () => {
    const layout = detectCgroups(fakeV2());
    const root = tmp!;
    const cg = new ComputerCgroup(layout, 'c1');
    const dir = path.join(root, 'hangar', 'c1');
    // What the kernel would create with the directory.
    fs.mkdirSync(path.join(root, 'hangar'));
    fs.writeFileSync(path.join(root, 'hangar', 'cgroup.subtree_control'), '');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'memory.swap.max'), 'max');
    cg.create({ vcpus: 2, memoryMb: 8192, pids: 4096 });
    expect(fs.readFileSync(path.join(dir, 'memory.max'), 'utf8')).toBe(String(8192 * 2 ** 20));
    expect(fs.readFileSync(path.join(dir, 'memory.swap.max'), 'utf8')).toBe('0');
    expect(fs.readFileSync(path.join(dir, 'cpu.max'), 'utf8')).toBe('200000 100000');
    expect(fs.readFileSync(path.join(dir, 'pids.max'), 'utf8')).toBe('4096');
    expect(fs.readFileSync(path.join(root, 'cgroup.subtree_control'), 'utf8')).toMatch(/^\+/);
    expect(cg.readLimits()).toEqual({ memoryBytes: 8192 * 2 ** 20, cpuQuotaUs: 200000, cpuPeriodUs: 100000, pids: 4096 });

    fs.writeFileSync(path.join(dir, 'cpu.stat'), 'usage_usec 1500\nuser_usec 1000\n');
    fs.writeFileSync(path.join(dir, 'memory.current'), '5000');
    fs.writeFileSync(path.join(dir, 'memory.stat'), 'anon 3000\ninactive_file 1000\n');
    fs.writeFileSync(path.join(dir, 'memory.events'), 'low 0\noom 1\noom_kill 1\n');
    expect(cg.sample()).toEqual({ cpuNs: 1_500_000, memoryBytes: 4000, memoryLimitBytes: 8192 * 2 ** 20, oomKills: 1 });
    expect(cg.procsFiles()).toEqual([path.join(dir, 'cgroup.procs')]);
  });
});
