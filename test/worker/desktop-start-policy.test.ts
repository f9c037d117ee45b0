/**
 * When a computer's desktop starts (durable-objects/desktop/start-policy.ts):
 * with DESKTOP_START unset, at boot — except a VM on a host that emulates its
 * CPU (the host's hello said `vm_accel: "tcg"`), which starts it on first
 * use (that a first desktop call starts it, every other desktop test of this
 * suite shows, under DESKTOP_START=first-use); a DESKTOP_START the operator set holds for every computer. The rest
 * of this suite runs with DESKTOP_START=first-use (see the config); these
 * tests change it on the shared environment and put it back.
 */
import { env } from 'cloudflare:test';
import { afterEach, describe, expect, it } from 'vitest';
import type { Env } from '../../worker/env.ts';
import { expectJson } from './helpers.ts';
import { connectHost, useAgentPeers, type ComputerPeer } from './agent-peer.ts';
import { runningComputer, world } from './computer-fixtures.ts';

useAgentPeers();

const settings = env as unknown as Env;
const configured = settings.DESKTOP_START;
afterEach(() => {
  settings.DESKTOP_START = configured;
});

/** A world whose host offers both drivers, its VMs on `accel`. */
async function hostWorld(accel: 'kvm' | 'tcg') {
  const w = await world();
  w.host.close();
  const host = await connectHost(w.host, [], { drivers: ['sandbox', 'vm'], vm_accel: accel });
  return { ...w, host };
}

const startsDesktop = (command: string) => command.includes(' start --resolution ');

/** The commands the computer's agent was asked to run, in order, once `n` have come. */
async function commands(peer: ComputerPeer, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await peer.take('exec.run')).params.command);
  return out;
}

describe('DESKTOP_START unset', () => {
  it('a sandbox starts its desktop as soon as it runs', async () => {
    settings.DESKTOP_START = undefined;
    const w = await hostWorld('tcg');
    const { peer } = await runningComputer(w, { isolation: 'sandbox' });
    expect(startsDesktop((await commands(peer, 1))[0])).toBe(true);
  });

  it('a VM on a KVM host starts its desktop as soon as it runs', async () => {
    settings.DESKTOP_START = undefined;
    const w = await hostWorld('kvm');
    const { peer } = await runningComputer(w, { isolation: 'vm' });
    expect(startsDesktop((await commands(peer, 1))[0])).toBe(true);
  });

  it('a VM on an emulating (TCG) host does not: its user\'s first command finds no desktop starting', async () => {
    settings.DESKTOP_START = undefined;
    const w = await hostWorld('tcg');
    const { computer, peer } = await runningComputer(w, { isolation: 'vm' });
    // With `boot`, the start command is sent the moment the computer runs, before this call can be.
    await expectJson(await w.api(`/${computer.id}/exec`, { method: 'POST', body: { command: 'echo first' } }), 200);
    expect(peer.requests.map((r) => r.type)).toContain('proc.start');
    expect(peer.requests.filter((r) => r.type === 'exec.run')).toEqual([]);
  });
});

describe('DESKTOP_START set by the operator', () => {
  it('boot holds for a VM on an emulating host too', async () => {
    settings.DESKTOP_START = 'boot';
    const w = await hostWorld('tcg');
    const { peer } = await runningComputer(w, { isolation: 'vm' });
    expect(startsDesktop((await commands(peer, 1))[0])).toBe(true);
  });
});
