/**
 * selected_apps: extra software installed into one computer at provision, with
 * apt inside the computer (as root, through the guest), its output reported as
 * progress. Names this host does not know are skipped and reported as such
 * rather than failing the provision: the catalogue of apps is the control
 * plane's, and an older agent should still bring the computer up.
 */
import type { ProgressFn } from '../driver.ts';
import { DriverError } from '../driver.ts';
import type { GuestClient } from '../../guest-client.ts';

const APP_PACKAGES: Record<string, string[]> = {
  nodejs: ['nodejs', 'npm'],
  node: ['nodejs', 'npm'],
};

/** Installs the apps not yet on the disk; returns the names now installed (known apps only). */
export async function installApps(
  guest: GuestClient,
  apps: string[],
  already: string[],
  onProgress: ProgressFn,
): Promise<string[]> {
  const installed = new Set(already);
  const unknown = apps.filter((a) => !APP_PACKAGES[a]);
  for (const app of unknown) onProgress({ phase: 'apps', message: `unknown app ${JSON.stringify(app)}: skipped` });
  const todo = apps.filter((a) => APP_PACKAGES[a] && !installed.has(a));
  if (todo.length === 0) return [...installed];
  const packages = [...new Set(todo.flatMap((a) => APP_PACKAGES[a]))];
  onProgress({ phase: 'apps', message: `installing ${packages.join(', ')}`, fraction: 0 });
  // The template's package lists may be stale against the mirror: refresh and retry once.
  const install = `apt-get install -y --no-install-recommends ${packages.join(' ')}`;
  const code = await runStreaming(guest, `${install} || (apt-get update && ${install})`, onProgress);
  if (code !== 0) throw new DriverError('FAILED', `installing ${todo.join(', ')} failed (apt exit ${code})`);
  for (const app of todo) installed.add(app);
  onProgress({ phase: 'apps', message: `installed ${todo.join(', ')}`, fraction: 1 });
  return [...installed];
}

async function runStreaming(guest: GuestClient, command: string, onProgress: ProgressFn): Promise<number> {
  const proc = guest.spawn({ command, user: 'root', cwd: '/root', stdin: false, timeout_s: 1800, env: { DEBIAN_FRONTEND: 'noninteractive' } });
  let partial = '';
  proc.on('output', (_stream, data) => {
    const lines = (partial + data.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) onProgress({ phase: 'apps', message: line.trim() });
  });
  await proc.started;
  const exit = await Promise.race([
    proc.exited,
    new Promise<never>((_, reject) => proc.once('detached', () => reject(new DriverError('FAILED', 'lost the guest while installing apps')))),
  ]);
  await proc.forget().catch(() => undefined);
  return exit.exit_code;
}
