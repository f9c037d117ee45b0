/** Sync exec: one command run to completion in the computer through its guest agent. */
import type { ExecRunParams, ExecRunResult } from '../../schema/protocol.ts';
import type { ComputerDriver } from '../drivers/driver.ts';

export function handleExecRun(driver: ComputerDriver, id: string, params: ExecRunParams): Promise<ExecRunResult> {
  return driver.exec(id, params);
}
