/**
 * When a computer's desktop starts. The operator's DESKTOP_START, when it
 * says `boot` or `first-use`, holds for every computer. Left unset, desktops
 * start at boot, except on a VM whose host emulates its CPU (TCG): starting
 * an X server and a session there takes the VM's first minute of CPU, and
 * everything its user does first (exec, a terminal, a file upload) waits
 * behind it. Such a VM starts its desktop when someone first uses it.
 * docs/desktop.md has the figures.
 */
import type { Isolation } from '../../schema/isolation.ts';

export type DesktopStartPolicy = 'boot' | 'first-use';
export type VmAccel = 'kvm' | 'tcg';

/** The operator's setting, if it names a policy (anything else is "unset"). */
function configuredPolicy(setting: string | undefined): DesktopStartPolicy | null {
  return setting === 'boot' || setting === 'first-use' ? setting : null;
}

/**
 * The policy for one computer. `accel` is asked for only when it decides
 * (an unset policy and a VM), since it costs a read of the host's row.
 */
export async function desktopStartPolicy(setting: string | undefined, isolation: Isolation, accel: () => Promise<VmAccel | null>): Promise<DesktopStartPolicy> {
  const configured = configuredPolicy(setting);
  if (configured) return configured;
  if (isolation !== 'vm') return 'boot';
  return (await accel()) === 'tcg' ? 'first-use' : 'boot';
}

/** What the computer's host said in its hello: which accelerator its VMs run on. */
export async function hostAccel(db: D1Database, hostId: string | undefined): Promise<VmAccel | null> {
  if (!hostId) return null;
  const row = await db.prepare('SELECT vm_accel FROM hosts WHERE id = ?').bind(hostId).first<{ vm_accel: VmAccel | null }>();
  return row?.vm_accel ?? null;
}
