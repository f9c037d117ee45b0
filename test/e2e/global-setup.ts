/**
 * One real Hangar for all end-to-end tests: the Worker under `wrangler dev`
 * on a fresh state dir (fresh D1 and Durable Objects), a registered fleet host
 * and a real host agent process serving it with both drivers (computers are
 * sandboxes unless HANGAR_E2E_ISOLATION=vm makes them VMs; a test may ask for
 * either). Test files seed their own tenants.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { useSharedTemplates } from '../shared-template.ts';
import { E2E_DRIVERS, ISOLATION, destroyAllOn } from './isolation-under-test.ts';
import { freePort, registerHost, startAgent, startWorker, type AgentHandle, type WorkerHandle } from '../../scripts/local-stack.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    hangar: { origin: string; apiUrl: string; operatorToken: string; hostId: string; hostKey: string; dataDir: string; agentPid: number; workerPid: number; jwtSecret: string };
  }
}

let worker: WorkerHandle | undefined;
let agent: AgentHandle | undefined;
let stateDir: string | undefined;
let dataDir: string | undefined;

const verbose = process.env.HANGAR_E2E_VERBOSE === '1';
const log = (s: string) => {
  if (verbose) process.stderr.write(s);
};

export async function setup(project: TestProject): Promise<void> {
  stateDir = mkdtempSync(path.join(os.tmpdir(), 'hangar-e2e-'));
  // Uploads to tenant hosts stop at 64 MiB here: room for the 50 MB round trip, and cheap to pass.
  worker = await startWorker({ stateDir, port: await freePort(), vars: { METRICS_INTERVAL_MS: '1000', COMPUTER_DISK_GB: '1', HOST_UPLOAD_MAX_BYTES: String(64 * 1024 * 1024), DEFAULT_ISOLATION: ISOLATION }, log });
  const host = await registerHost(worker.origin, worker.secrets.OPERATOR_TOKEN, { name: 'e2e-host', region: 'local' });
  // The agent removes computers its server does not know, so it gets a data dir of its own.
  dataDir = path.join(stateDir, 'data');
  useSharedTemplates(dataDir);
  agent = await startAgent({ origin: worker.origin, hostKey: host.host_key, dataDir, drivers: E2E_DRIVERS, log: (s) => process.stderr.write(s) });
  project.provide('hangar', {
    origin: worker.origin,
    apiUrl: worker.apiUrl,
    operatorToken: worker.secrets.OPERATOR_TOKEN,
    hostId: host.id,
    hostKey: host.host_key,
    dataDir,
    // SIGUSR2 makes the agent drop every socket as a network failure would.
    agentPid: agent.process.pid!,
    // wrangler dev; workerd runs below it (memory figures of the relay read its process tree).
    workerPid: worker.process.pid!,
    // Tests that need a token the API would not mint (an expired one) sign it themselves.
    jwtSecret: worker.secrets.JWT_SECRET,
  });
}

export async function teardown(): Promise<void> {
  await agent?.stop();
  // Computers outlive their agent by design; whatever a failed test left running goes now.
  if (dataDir) await destroyAllOn(dataDir);
  await worker?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
}
