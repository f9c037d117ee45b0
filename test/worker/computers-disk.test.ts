import { describe, expect, it } from 'vitest';
import { SIZES } from '../../schema/sizes.ts';
import { diskGbFor } from '../../worker/computers/disk-size.ts';
import { expectJson } from './helpers.ts';
import { useAgentPeers } from './agent-peer.ts';
import { createComputer, getComputer, runningComputer, stoppedComputer, world, type ComputerView } from './computer-fixtures.ts';

useAgentPeers();

describe('disk quotas', () => {
  it('a new computer has its size disk, shown as disk_gb and sent to the agent in the spec', async () => {
    const w = await world();
    const small = await createComputer(w);
    expect(small.disk_gb).toBe(SIZES.small.disk_gb);
    expect((await getComputer(w, small.id)).disk_gb).toBe(SIZES.small.disk_gb);
    expect((await createComputer(w, { size: 'large' })).disk_gb).toBe(SIZES.large.disk_gb);

    const { computer, peer } = await stoppedComputer(w, { size: 'medium' });
    await expectJson(await w.api(`/${computer.id}/start`, { method: 'POST' }), 200);
    expect((await peer.take('computer.start')).spec).toMatchObject({ size: 'medium', disk_gb: SIZES.medium.disk_gb });
  });

  it('resize to a larger size grows the disk; back to a smaller size keeps it (a disk never shrinks)', async () => {
    const w = await world();
    const { computer, peer } = await stoppedComputer(w);
    const large = await expectJson<ComputerView>(await w.api(`/${computer.id}/resize`, { method: 'POST', body: { size: 'large' } }), 200);
    expect(large.disk_gb).toBe(SIZES.large.disk_gb);
    expect((await peer.take('computer.resize')).spec).toMatchObject({ disk_gb: SIZES.large.disk_gb });
    const small = await expectJson<ComputerView>(await w.api(`/${computer.id}/resize`, { method: 'POST', body: { size: 'small' } }), 200);
    expect(small).toMatchObject({ size: 'small', memory_mb: SIZES.small.memory_mb, disk_gb: SIZES.large.disk_gb });
    expect((await peer.take('computer.resize')).spec).toMatchObject({ size: 'small', disk_gb: SIZES.large.disk_gb });
  });

  it('a clone has at least its source disk', async () => {
    const w = await world();
    const { computer: src } = await runningComputer(w, { size: 'large' });
    const clone = await expectJson<ComputerView>(await w.api(`/${src.id}/clone`, { method: 'POST' }), 201);
    expect(clone.disk_gb).toBe(SIZES.large.disk_gb);
  });

  it('the operator may set disk sizes: one number for all, or some sizes as JSON; anything else means the defaults', () => {
    expect(diskGbFor({}, 'small')).toBe(SIZES.small.disk_gb);
    expect(diskGbFor({ COMPUTER_DISK_GB: '2' }, 'large')).toBe(2);
    expect(diskGbFor({ COMPUTER_DISK_GB: '{"small": 5}' }, 'small')).toBe(5);
    expect(diskGbFor({ COMPUTER_DISK_GB: '{"small": 5}' }, 'medium')).toBe(SIZES.medium.disk_gb);
    for (const bad of ['-1', '0', '1.5', 'lots', '{"tiny": 3}', '{"small": "x"}', '[1]']) {
      expect(diskGbFor({ COMPUTER_DISK_GB: bad }, 'small'), bad).toBe(SIZES.small.disk_gb);
    }
  });
});
