/**
 * hangar-agent: makes computers real on this host. It prepares the driver
 * (building the base template on first use, with progress), then dials the
 * API and serves its computers until stopped. Computers keep running when the
 * agent stops; the next agent finds them again.
 */
import { AGENT_WHOAMI_PATH, WhoAmI } from '../schema/protocol.ts';
import { readConfig, wsBase, type AgentConfig } from './config.ts';
import { SandboxDriver } from './drivers/sandbox.ts';
import { pipMirrorDirs } from './drivers/sandbox/host-config.ts';
import { HostSession } from './host-session.ts';
import { logger } from './log.ts';
import { AGENT_VERSION } from './version.ts';
import { runHostMode } from './host-mode/run.ts';
import { EXIT_CONFIG } from './host-mode/session.ts';
import type { Logger } from './log.ts';

/**
 * Which kind of host the key is for: a fleet host makes computers, a tenant
 * host (OpenComputers) is served itself. Retried while the server cannot be
 * reached; a refused key ends the agent.
 */
async function whoAmI(cfg: AgentConfig, log: Logger): Promise<WhoAmI> {
  const url = new URL(AGENT_WHOAMI_PATH, cfg.api);
  for (let attempt = 0; ; attempt++) {
    let problem: string;
    try {
      const r = await fetch(url, { headers: { authorization: `Bearer ${cfg.key}` }, signal: AbortSignal.timeout(15_000) });
      if (r.status === 401 || r.status === 403 || r.status === 404) {
        console.error(`hangar-agent: the server refused this host key (HTTP ${r.status}): it is unknown or revoked; check --key`);
        process.exit(EXIT_CONFIG);
      }
      const parsed = WhoAmI.safeParse(await r.json().catch(() => null));
      if (r.ok && parsed.success) return parsed.data;
      problem = `HTTP ${r.status}`;
    } catch (e) {
      problem = (e as Error).message;
    }
    const delay = Math.min(15_000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
    log(`cannot reach ${url.origin} yet (${problem}); trying again in ${Math.round(delay / 100) / 10} s`);
    await new Promise((r) => setTimeout(r, delay));
  }
}

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
  if (who.kind === 'byo') return runHostMode(cfg, who, log);
  // Without --share-ro, computers get the host's local pip mirror (if any), so pip works inside as on the host.
  const shares = cfg.shareReadOnly ?? pipMirrorDirs();
  const driver = new SandboxDriver({ dataDir: cfg.dataDir, shareReadOnly: shares });
  if (shares.length) log(`sharing read-only with computers: ${shares.join(', ')}`);
  log(`hangar-agent ${AGENT_VERSION}, driver ${driver.name}, data in ${cfg.dataDir}`);
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
    void session.stop().then(() => process.exit(0));
  };
  // An operator (or a failover test) can make the agent drop and redial every socket, as a network blip would.
  process.on('SIGUSR2', () => {
    log('SIGUSR2: dropping every connection; they reconnect by themselves');
    session.dropConnections();
  });
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}
