/** Ending QEMU processes: waiting for them, asking QEMU to quit, killing. */
import { isAlive, type VmState } from './qemu.ts';
import type { VmPaths } from './paths.ts';
import { Qmp } from './qmp.ts';

/** Resolves true once the VM's QEMU is gone, false if it is still there after `timeoutMs`. */
export async function exits(state: VmState, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(state)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Tells QEMU to quit at once (no guest shutdown); harmless when it no longer answers. */
export async function quitQemu(paths: VmPaths): Promise<void> {
  try {
    const qmp = await Qmp.connect(paths.qmpSocket, 2000);
    await qmp.execute('quit').catch(() => undefined);
    qmp.close();
  } catch {
    // QEMU no longer answers: it will be killed
  }
}

/** Quits QEMU, and kills it if it does not go; resolves once it is gone. */
export async function quitOrKill(paths: VmPaths, state: VmState): Promise<void> {
  await quitQemu(paths);
  if (!(await exits(state, 10_000))) kill(state.pid);
  await exits(state, 10_000);
}

export function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
