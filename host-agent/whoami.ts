/**
 * Which kind of host the key is for: a fleet host makes computers, a tenant
 * host (OpenComputers) is served itself. Retried while the server cannot be
 * reached; a refused key ends the agent. A server without the route (one
 * older than host mode) answers null: its keys are fleet hosts'.
 */
import { AGENT_WHOAMI_PATH, WhoAmI } from '../schema/protocol.ts';
import type { AgentConfig } from './config.ts';
import type { Logger } from './log.ts';

/** Exit status for what restarting cannot fix (a refused key, a revoked host, a failed preflight): `RestartPreventExitStatus=78`. */
export const EXIT_CONFIG = 78;

export async function whoAmI(cfg: Pick<AgentConfig, 'api' | 'key'>, log: Logger): Promise<WhoAmI | null> {
  const url = new URL(AGENT_WHOAMI_PATH, cfg.api);
  for (let attempt = 0; ; attempt++) {
    let problem: string;
    try {
      const r = await fetch(url, { headers: { authorization: `Bearer ${cfg.key}` }, signal: AbortSignal.timeout(15_000) });
      if (r.status === 404) return null;
      if (r.status === 401 || r.status === 403) {
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
