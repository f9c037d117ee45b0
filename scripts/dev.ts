/**
 * `npm start`: the whole of Hangar on this machine. Serves the API at
 * http://127.0.0.1:8787/api/v1 on local D1 and Durable Objects, seeds a dev
 * organization with credits and an API key, starts a host agent that joins as
 * a fleet host, prints the base URL and key, and writes them to
 * .hangar/dev.json. State persists in .hangar/ between runs. The agent runs
 * under a supervisor: if it dies it is started again (with a growing pause)
 * and the API stays up.
 *
 * Environment: PORT (8787), HANGAR_HOME (where .hangar's files go; default
 * .hangar in the checkout), HANGAR_DATA_DIR (the agent's computers and
 * template; default /var/lib/hangar).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, registerHost, seedTenant, startAgent, startWorker } from './local-stack.ts';
import { Supervisor } from './supervisor.ts';
import { ensureSystemDeps } from './system-deps.ts';

const PORT = Number(process.env.PORT ?? 8787);
const HANGAR = process.env.HANGAR_HOME ? path.resolve(process.env.HANGAR_HOME) : path.join(ROOT, '.hangar');
const STATE = path.join(HANGAR, 'state');
const DEV_JSON = path.join(HANGAR, 'dev.json');
const HOST_JSON = path.join(HANGAR, 'host.json');

interface DevInfo {
  api_url: string;
  api_key: string;
  operator_token: string;
}

const say = (s: string) => console.log(`hangar: ${s}`);

async function keyWorks(apiUrl: string, key: string): Promise<boolean> {
  const r = await fetch(`${apiUrl}/computers?page_size=1`, { headers: { authorization: `Bearer ${key}` } });
  return r.ok;
}

async function main(): Promise<void> {
  ensureSystemDeps(say, { vm: true });
  mkdirSync(STATE, { recursive: true });
  say('starting the API (wrangler dev, local D1 and Durable Objects)…');
  const worker = await startWorker({ stateDir: STATE, port: PORT, log: (s) => process.stderr.write(s) });
  const token = worker.secrets.OPERATOR_TOKEN;

  let dev: DevInfo | null = existsSync(DEV_JSON) ? (JSON.parse(readFileSync(DEV_JSON, 'utf8')) as DevInfo) : null;
  if (!dev || !(await keyWorks(worker.apiUrl, dev.api_key))) {
    const tenant = await seedTenant(worker.origin, token, { name: 'Dev', credits: 1000 });
    dev = { api_url: worker.apiUrl, api_key: tenant.api_key, operator_token: token };
    writeFileSync(DEV_JSON, JSON.stringify(dev, null, 2) + '\n', { mode: 0o600 });
    say('seeded organization "Dev" with 1000 credits and an API key');
  }

  let host: { id: string; host_key: string } | null = existsSync(HOST_JSON) ? JSON.parse(readFileSync(HOST_JSON, 'utf8')) : null;
  const known = host ? await fetch(`${worker.apiUrl}/admin/hosts/${host.id}`, { headers: { authorization: `Bearer ${token}` } }) : null;
  if (!host || !known?.ok) {
    host = await registerHost(worker.origin, token, { name: 'local', region: 'local' });
    writeFileSync(HOST_JSON, JSON.stringify(host, null, 2) + '\n', { mode: 0o600 });
  }

  say('starting the host agent (the first run builds the computer template and the VM images: a minute or two)…');
  const hostKey = host.host_key;
  const agent = new Supervisor({
    name: 'host agent',
    // This host offers both: sandboxes by default, microVMs for {"isolation": "vm"}.
    start: () => startAgent({ origin: worker.origin, hostKey, drivers: ['sandbox', 'vm'], log: (s) => process.stderr.write(s) }),
    log: say,
  });
  const first = await agent.start();
  say(`host agent running (pid ${first.pid})`);

  console.log(`
  Hangar is running.

    API:  ${dev.api_url}
    Key:  ${dev.api_key}
    (also in .hangar/dev.json)

  Try:
    curl -X POST ${dev.api_url}/computers -H "Authorization: Bearer ${dev.api_key}" \\
      -H "Content-Type: application/json" -d '{"name":"my-computer","template_type":"miosa-desktop"}'
`);

  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    say('stopping (computers keep their disks; they are stopped by the next run if the server says so)');
    await agent.stop();
    await worker.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
  // The API is what everything else needs: if it goes, so does this run (the agent with it).
  worker.process.once('exit', (code) => {
    if (stopping) return;
    stopping = true;
    say(`the API (wrangler dev) exited (${code}); stopping`);
    void agent.stop().then(() => process.exit(code ?? 1));
  });
}

main().catch((e) => {
  console.error(`hangar: ${(e as Error).message}`);
  process.exit(1);
});
