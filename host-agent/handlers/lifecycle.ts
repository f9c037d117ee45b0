/** Lifecycle requests: provision, start, stop, destroy, resize, env. Each answers with the state the host now has. */
import type { ComputerRequest, LifecycleResult } from '../../schema/protocol.ts';
import { DriverError, type ComputerDriver, type ProgressFn } from '../drivers/driver.ts';

export type LifecycleRequest = Extract<
  ComputerRequest,
  { type: 'computer.provision' | 'computer.start' | 'computer.stop' | 'computer.destroy' | 'computer.resize' | 'computer.env' }
>;

export async function handleLifecycle(driver: ComputerDriver, id: string, req: LifecycleRequest, progress: ProgressFn): Promise<LifecycleResult> {
  switch (req.type) {
    case 'computer.provision':
      await driver.provision(req.spec, req.clone_from, progress, req.snapshot_id);
      break;
    case 'computer.start':
      await driver.start(req.spec);
      break;
    case 'computer.stop':
      if (req.keep_memory) {
        if (!driver.suspend) throw new DriverError('BAD_REQUEST', 'this host cannot keep a computer\'s memory when it stops');
        await driver.suspend(id);
      } else {
        await driver.stop(id);
      }
      break;
    case 'computer.destroy':
      await driver.destroy(id);
      break;
    case 'computer.resize':
      await driver.resize(req.spec);
      break;
    case 'computer.env':
      if ((await driver.state(id)) === 'running') await driver.setEnv(id, req.env);
      break;
  }
  const state = await driver.state(id);
  // A boot may give the computer a new address; the server shows the latest (protocol 1.6).
  const booted = req.type === 'computer.provision' || req.type === 'computer.start';
  if (booted && state === 'running' && driver.address) return { state, ip_address: await driver.address(id) };
  return { state };
}
