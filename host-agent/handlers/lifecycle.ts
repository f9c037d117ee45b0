/** Lifecycle requests: provision, start, stop, destroy, resize, env. Each answers with the state the host now has. */
import type { ComputerRequest, LifecycleResult } from '../../schema/protocol.ts';
import type { ComputerDriver, ProgressFn } from '../drivers/driver.ts';

export type LifecycleRequest = Extract<
  ComputerRequest,
  { type: 'computer.provision' | 'computer.start' | 'computer.stop' | 'computer.destroy' | 'computer.resize' | 'computer.env' }
>;

export async function handleLifecycle(driver: ComputerDriver, id: string, req: LifecycleRequest, progress: ProgressFn): Promise<LifecycleResult> {
  switch (req.type) {
    case 'computer.provision':
      await driver.provision(req.spec, req.clone_from, progress);
      break;
    case 'computer.start':
      await driver.start(req.spec);
      break;
    case 'computer.stop':
      await driver.stop(id);
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
  return { state: await driver.state(id) };
}
