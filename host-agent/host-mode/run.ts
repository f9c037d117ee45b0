/** Starting the agent in host mode: what the machine is, the session, and how it stops. */
import { realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WhoAmI } from '../../schema/protocol.ts';
import { wsBase, type AgentConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import { AGENT_VERSION } from '../version.ts';
import { findScript } from './pty.ts';
import { HostModeSession } from './session.ts';
import { machineFacts } from './system-info.ts';

/** The real path of the --fs-root, or the path as given when it does not exist (the preflight says so). */
function realRoot(root: string | undefined): string | null {
  if (root === undefined) return null;
  const abs = path.resolve(root);
  try {
    return realpathSync(abs);
  } catch {
    return abs;
  }
}

export async function runHostMode(cfg: AgentConfig, who: WhoAmI, log: Logger): Promise<never> {
  const facts = machineFacts({ script: findScript(), fsRoot: realRoot(cfg.fsRoot) });
  log(`hangar-agent ${AGENT_VERSION} in host mode for host "${who.name}" (${who.host_id}): ${process.platform}/${process.arch}, Node ${process.version}, user ${facts.user.name}`);
  if (!facts.script) log('no `script` command was found: terminals are not available on this host (jobs and files are)');
  // Model files (and hangar-tiny, written on first need) live with the user who runs the agent.
  const models = { modelsDir: path.join(cfg.modelsDir ?? path.join(os.homedir(), '.hangar'), 'models'), externalUrl: cfg.modelServer };
  const session = new HostModeSession({ wsBase: wsBase(cfg.api), hostKey: cfg.key, models }, facts, log);
  session.start();
  void session.ready.then(() => log('ready'));
  const shutdown = () => {
    log('stopping; the processes this agent started end with it');
    session.stop();
    process.exit(0);
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
  if (process.platform !== 'win32') {
    process.on('SIGUSR2', () => {
      log('SIGUSR2: dropping the connection; it reconnects by itself');
      session.dropConnections();
    });
  }
  process.exit(await session.finished);
}
