/**
 * Moving a computer between two real hosts: the suite's agent serves region
 * "local"; this file starts a second real agent, with a data dir of its own,
 * registered as a fleet host of region "second". The disk goes through the
 * real Worker and ComputerObject as disk frames, from one agent's tar to the
 * other's.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerHost, startAgent, type AgentHandle } from '../../scripts/local-stack.ts';
import { useSharedTemplates } from '../shared-template.ts';
import { hangar, newTenant, operatorClient, type Client } from './client.ts';
import { E2E_DRIVERS, destroyAllOn, hasDisk, wroteToDisk } from './isolation-under-test.ts';

const REGION = 'second';
const verbose = process.env.HANGAR_E2E_VERBOSE === '1';

describe('move a computer to another region, end to end', () => {
  let api: Client;
  let agent: AgentHandle | undefined;
  let hostId = '';
  let dataDir = '';
  let id = '';

  beforeAll(async () => {
    api = await newTenant('mover');
    const h = hangar();
    const host = await registerHost(h.origin, h.operatorToken, { name: 'e2e-second-host', region: REGION });
    hostId = host.id;
    // An agent removes computers its server does not know: this one gets a data dir of its own, and the shared template.
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-second-'));
    useSharedTemplates(dataDir);
    agent = await startAgent({ origin: h.origin, hostKey: host.host_key, dataDir, drivers: E2E_DRIVERS, log: (s) => verbose && process.stderr.write(`[second] ${s}`) });
  });

  afterAll(async () => {
    if (id) await api.del(`/computers/${id}`);
    await agent?.stop();
    // Computers outlive their agent by design: whatever this file left on the second host goes now.
    if (dataDir) {
      await destroyAllOn(dataDir);
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
    if (hostId) await operatorClient().del(`/admin/hosts/${hostId}`);
  });

  it('a stopped computer moves with its files, owners, modes and deletions, and runs there; the first host keeps nothing of it', async () => {
    id = await api.runningComputer('mover', { region: 'local' });
    expect(hasDisk(hangar().dataDir, id)).toBe(true);

    // A file of the user's, a root-owned sudoers drop-in (sudo refuses one with the wrong owner or mode),
    // a template file deleted (an overlay whiteout) and a template dir replaced (an opaque dir).
    const setup = await api.exec(
      id,
      [
        'echo carried > /workspace/moved.txt',
        "echo 'Defaults:user !lecture' | sudo tee /etc/sudoers.d/moved >/dev/null",
        'sudo chmod 0440 /etc/sudoers.d/moved',
        'sudo rm /etc/issue',
        'sudo rm -rf /etc/skel && sudo mkdir /etc/skel && sudo touch /etc/skel/only-this',
        'sudo install -m 4750 -o root -g user /bin/true /usr/local/bin/suid-true',
        // Several windows' worth, so the disk travels under flow control.
        'head -c 24M /dev/urandom > /workspace/big.bin',
      ].join(' && '),
    );
    expect(setup.body).toMatchObject({ exit_code: 0 });
    const check = 'stat -c "%U:%G %a %n" /workspace/moved.txt /etc/sudoers.d/moved /usr/local/bin/suid-true; sha256sum /workspace/big.bin';
    const before = await api.exec(id, check);

    expect((await api.post(`/computers/${id}/stop`)).body.status).toBe('stopped');
    const moved = await api.post(`/computers/${id}/move`, { region: REGION });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({ id, region: REGION, status: 'stopped' });
    expect((await api.get(`/computers/${id}`)).body).toMatchObject({ region: REGION, status: 'stopped' });

    // The disk is on the second host only.
    expect(hasDisk(hangar().dataDir, id)).toBe(false);
    expect(hasDisk(dataDir, id)).toBe(true);
    expect(wroteToDisk(dataDir, id, '/workspace/moved.txt')).toBe(true);

    const start = await api.post(`/computers/${id}/start`);
    expect(start.status).toBe(200);
    expect(start.body).toMatchObject({ status: 'running', region: REGION });
    const after = await api.exec(id, 'cat /workspace/moved.txt; sudo -n whoami; test -e /etc/issue && echo issue-back || echo issue-gone; ls -A /etc/skel');
    expect(after.body).toMatchObject({ exit_code: 0, output: 'carried\nroot\nissue-gone\nonly-this\n' });
    expect((await api.exec(id, check)).body.output).toBe(before.body.output);
  });
});
