/**
 * hangar-agent: makes computers real on this host. It prepares the driver
 * (building the base template on first use, with progress), then dials the
 * API and serves its computers until stopped. Computers keep running when the
 * agent stops; the next agent finds them again. Given a tenant host's key
 * (OpenComputers) it serves the machine itself instead (host-mode/).
 */
import { readConfig, wsBase } from './config.ts';
import type { ComputerDriver } from './drivers/driver.ts';
import { DriverRouter } from './drivers/router.ts';
import { SandboxDriver } from './drivers/sandbox.ts';
import { VmDriver } from './drivers/vm/vm-driver.ts';
import { pipMirrorDirs } from './drivers/sandbox/host-config.ts';
import { HostSession } from './host-session.ts';
import { logger } from './log.ts';
import { AGENT_VERSION } from './version.ts';
import { runHostMode } from './host-mode/run.ts';
import { whoAmI } from './whoami.ts';

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const log = logger('agent');
  let cfg;
  try {
    cfg = readConfig(argv, process.env);
  } catch (e) {
    console.error((e as Error).message);
    process.exit(2);
  }
  const who = await whoAmI(cfg, log);
  if (who?.kind === 'byo') return runHostMode(cfg, who, log);
  // Without --share-ro, computers get the host's local pip mirror (if any), so pip works inside as on the host.
  const shares = cfg.shareReadOnly ?? pipMirrorDirs();
  const drivers: ComputerDriver[] = cfg.drivers.map((name) =>
    name === 'vm' ? new VmDriver({ dataDir: cfg.dataDir }) : new SandboxDriver({ dataDir: cfg.dataDir, shareReadOnly: shares, diskPoolGb: cfg.diskPoolGb }),
  );
  // One router even for one driver: it keeps each computer with the driver its disk was made by.
  const driver = new DriverRouter(drivers);
  if (shares.length && cfg.drivers.includes('sandbox')) log(`sharing read-only with sandbox computers: ${shares.join(', ')}`);
  log(`hangar-agent ${AGENT_VERSION}, drivers ${driver.name}, data in ${cfg.dataDir}`);
  try {
    await driver.prepare((p) => log(`[${p.phase}] ${p.message}${p.fraction !== undefined ? ` (${Math.round(p.fraction * 100)}%)` : ''}`));
  } catch (e) {
    console.error(`hangar-agent cannot start: ${(e as Error).message}`);
    process.exit(1);
  }
  const session = new HostSession({ wsBase: wsBase(cfg.api), hostKey: cfg.key }, driver, log);
  session.start();
  void session.ready.then(() => log('ready'));
  const shutdown = () => {
    log('stopping; computers keep running');
    session.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log(`stopping failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  // An operator (or a failover test) can make the agent drop and redial every socket, as a network blip would.
  process.on('SIGUSR2', () => {
    log('SIGUSR2: dropping every connection; they reconnect by themselves');
    session.dropConnections();
  });
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
