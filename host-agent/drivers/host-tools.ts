/** What every driver checks of its host first: root, and the programs it runs (with the Debian packages that bring them). */
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from './driver.ts';

function onPath(tool: string): boolean {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  return dirs.some((d) => {
    try {
      fs.accessSync(path.join(d, tool), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Throws a DriverError saying what to do when the agent is not root (`why`:
 * what the driver needs root for) or a tool of `tools` (tool → package) is
 * missing.
 */
export function requireRootAndTools(driver: string, why: string, tools: Record<string, string>): void {
  if (process.getuid?.() !== 0) {
    throw new DriverError('FAILED', `the ${driver} driver must run as root (${why}): run the host agent with sudo.`);
  }
  const missing = Object.keys(tools).filter((t) => !onPath(t));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => tools[t]))].join(' ');
    throw new DriverError('FAILED', `the ${driver} driver needs ${missing.join(', ')}: run: sudo apt-get install -y ${pkgs}`);
  }
}
