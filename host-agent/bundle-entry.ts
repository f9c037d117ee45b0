/**
 * The one-file agent the API serves (GET /opencomputers/agent.mjs, built by
 * scripts/build-agent.mjs): host mode only, for a tenant's machine that has
 * Node.js 20 or newer and nothing else of this project. Fleet hosts run the
 * agent from a checkout (it needs the sandbox driver's files).
 */
import { readConfig } from './config.ts';
import { runHostMode } from './host-mode/run.ts';
import { logger } from './log.ts';
import { EXIT_CONFIG, whoAmI } from './whoami.ts';
import { MIN_NODE_MAJOR } from './host-mode/system-info.ts';
import { AGENT_WHOAMI_PATH } from '../schema/protocol.ts';

if (Number(process.versions.node.split('.')[0]) < MIN_NODE_MAJOR) {
  console.error(`hangar-agent needs Node.js ${MIN_NODE_MAJOR} or newer (this is ${process.version})`);
  process.exit(1);
}
const log = logger('agent');
let cfg;
try {
  cfg = readConfig(process.argv.slice(2), process.env);
} catch (e) {
  console.error((e as Error).message);
  process.exit(2);
}
const who = await whoAmI(cfg, log);
if (!who) {
  console.error(`hangar-agent: ${cfg.api} does not serve tenant hosts (no ${AGENT_WHOAMI_PATH}); check --api`);
  process.exit(EXIT_CONFIG);
}
if (who.kind !== 'byo') {
  console.error('hangar-agent: this key is a fleet host\'s; fleet hosts run the agent from a checkout of the project (npm run agent)');
  process.exit(EXIT_CONFIG);
}
await runHostMode(cfg, who, log);
